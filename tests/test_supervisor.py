"""``serve --workers N``: one SO_REUSEPORT listening socket per worker, restarts, refusal, stop."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from app import supervisor as sv

ROOT = Path(__file__).resolve().parents[1]
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT balancing is Linux's")


# -- the restart policy, with fake processes and a fixed clock ------------------------------
class FakeProc:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.code: int | None = None

    def poll(self):
        return self.code


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def supervisor(workers: int = 2) -> tuple[sv.Supervisor, Clock, list[FakeProc]]:
    clock, spawned = Clock(), []
    s = sv.Supervisor(["worker"], workers, clock=clock)

    def spawn(slot):
        slot.proc = FakeProc(100 + len(spawned))
        slot.started = clock()
        spawned.append(slot.proc)

    s._spawn = spawn
    for slot in s.slots:
        s._spawn(slot)
    return s, clock, spawned


def test_a_worker_that_keeps_dying_is_restarted_with_growing_delays():
    s, clock, spawned = supervisor()
    delays = []
    for _ in range(7):
        s.slots[0].proc.code = 1
        clock.now += 1
        s.check()
        assert s.slots[0].proc is None and not s.stopping
        delays.append(s.slots[0].restart_at - clock.now)
        clock.now = s.slots[0].restart_at
        s.check()
        assert s.slots[0].proc is spawned[-1]
    assert delays == [1, 2, 4, 8, 16, 30, 30]
    assert s.slots[1].proc is spawned[1]  # the other worker was left alone


def test_a_worker_that_ran_a_while_is_restarted_at_once():
    s, clock, spawned = supervisor()
    s.slots[0].quick_deaths = 4
    clock.now += sv.STABLE_AFTER + 1
    s.slots[0].proc.code = -9
    s.check()
    assert s.slots[0].restart_at == clock.now and s.slots[0].quick_deaths == 0
    s.check()
    assert len(spawned) == 3 and s.slots[0].history == [-9]


@pytest.mark.parametrize("code", [sv.STARTUP_FAILURE, sv.BIND_FAILURE])
def test_a_worker_that_cannot_start_stops_everything_with_its_code(code):
    s, clock, spawned = supervisor()
    s.slots[1].proc.code = code
    s.check()
    assert s.stopping and s.exit_code == code and len(spawned) == 2


# -- the real thing ----------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int) -> set[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return set()
    return {int(p) for p in text.split()}


def listeners(port: int) -> set[int]:
    """Pids holding a LISTEN socket on 127.0.0.1:port."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        if f[3] == "0A" and f[1].endswith(":%04X" % port):
            inodes.add(f"socket:[{f[9]}]")
    pids = set()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (d / "fd").iterdir()):
                pids.add(int(d.name))
        except OSError:
            continue
    return pids


def wait_for(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout} s")


@linux_only
def test_serve_with_two_workers(settings, container, tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHOOLMDM_") and k != "DATABASE_URL"}
    env.update(SCHOOLMDM_DATA_DIR=str(settings.data_dir), SCHOOLMDM_DATABASE_URL=settings.database_url,
               SCHOOLMDM_LOG_LEVEL="WARNING", SCHOOLMDM_BACKGROUND="false")
    argv = [sys.executable, "-m", "app.cli.main", "serve", "--port", str(port), "--workers", "2"]
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    ca = ssl.create_default_context(cafile=str(settings.data_dir / "pki" / "ca.pem"))
    try:
        def healthy():
            try:
                return httpx.get(f"https://127.0.0.1:{port}/healthz", verify=ca, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(lambda: len(children(proc.pid)) == 2 and healthy(), 60, "two workers answering")
        workers = children(proc.pid)
        # each worker holds a listening socket of its own; the supervisor holds none
        wait_for(lambda: listeners(port) == workers, 30, "both workers listening")

        # fresh connections reach the service whichever socket the kernel picks
        for _ in range(8):
            with httpx.Client(verify=ca) as c:
                assert c.get(f"https://127.0.0.1:{port}/healthz").status_code == 200

        # a second server on the same port is refused, not folded into the first one's group
        second = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert second.returncode == sv.BIND_FAILURE, second.stderr
        assert f"cannot listen on 127.0.0.1:{port}" in second.stderr

        # a worker that dies is replaced and the replacement listens
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        now = wait_for(lambda: (lambda c: c if len(c) == 2 and victim not in c else None)(children(proc.pid)),
                       30, "a replacement worker")
        wait_for(lambda: listeners(port) == now, 60, "the replacement listening")
        assert healthy()

        # SIGTERM stops the workers, then the supervisor, cleanly
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=40) == 0
        assert not any(Path(f"/proc/{pid}").exists() for pid in now)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
    text = (tmp_path / "serve.log").read_text()
    assert "worker 1 exited" in text or "worker 2 exited" in text
