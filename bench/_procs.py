"""Child processes for the storm bench, and what /proc says about them.

Every child starts in a process group of its own (``start_new_session``), so ``stop()``
ends the child and everything it spawned (the server's workers) by that group's id, and
nothing else. ``TreeSampler`` reads ``/proc`` (psutil is not a dependency): CPU seconds
(utime + stime) and peak resident memory (VmHWM) of a process tree, plus optional extra
processes such as the PostgreSQL backends serving the bench database.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """The benchmark could not reach a target; the message says which and why."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class Child:
    name: str
    proc: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float = 10.0) -> str:
        """SIGTERM to the child's process group, SIGKILL after ``grace`` seconds; says which ended it."""
        if self.proc.poll() is not None and not _group_alive(self.proc.pid):
            return "already exited"
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return "already exited"
            deadline = time.monotonic() + wait  # the leader and its workers (same group)
            while time.monotonic() < deadline:
                self.proc.poll()
                if self.proc.returncode is not None and not _group_alive(self.proc.pid):
                    return sig.name
                time.sleep(0.05)
        return "still running after SIGKILL"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start(name: str, argv: list[str], *, env: dict[str, str], log_path: Path, cwd: Path) -> Child:
    log = open(log_path, "ab")
    try:
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        log.close()
    return Child(name, proc, log_path)


def wait_until(pred: Callable[[], object], timeout: float, what: str, *, child: Child | None = None,
               interval: float = 0.1):
    """Poll ``pred`` until it returns something truthy; BenchError on timeout or if ``child`` died."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if child is not None and not child.alive():
            raise BenchError(f"{child.name} exited (code {child.proc.returncode}) while waiting for {what}:\n"
                             f"{child.log_tail()}")
        if time.monotonic() > deadline:
            raise BenchError(f"{what}: not reached within {timeout:.0f} s")
        time.sleep(interval)


# -- /proc ------------------------------------------------------------------------------------
def _stat(pid: int) -> tuple[int, float, int] | None:
    """(ppid, cpu seconds, start time in ticks) of a live process, else None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    rest = raw[raw.rfind(b")") + 2:].split()
    return int(rest[1]), (int(rest[11]) + int(rest[12])) / CLK_TCK, int(rest[19])


def _status_kb(pid: int, keys: tuple[bytes, ...] = (b"VmHWM:", b"VmRSS:")) -> dict[bytes, int]:
    out: dict[bytes, int] = {}
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                for k in keys:
                    if line.startswith(k):
                        out[k] = int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return out


def descendants(root: int) -> list[int]:
    """``root`` and every live process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None:
                children.setdefault(st[0], []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


@dataclass
class _Seen:
    cpu: float = 0.0
    hwm_kb: int = 0
    cmd: str = ""


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()[:160]
    except OSError:
        return ""


@dataclass
class TreeUsage:
    """What was seen of a group of processes so far."""

    seen: dict[tuple[int, int], _Seen] = field(default_factory=dict)  # (pid, starttime) -> last values
    peak_rss_sum_kb: int = 0
    peak_count: int = 0  # most processes alive at one sample

    def update(self, pids: list[int]) -> None:
        self.peak_count = max(self.peak_count, len(pids))
        rss_sum = 0
        for pid in pids:
            st = _stat(pid)
            if st is None:
                continue
            mem = _status_kb(pid)
            s = self.seen.get((pid, st[2]))
            if s is None:
                s = self.seen[(pid, st[2])] = _Seen(cmd=_cmdline(pid))
            s.cpu = st[1]
            s.hwm_kb = max(s.hwm_kb, mem.get(b"VmHWM:", 0))
            rss_sum += mem.get(b"VmRSS:", 0)
        self.peak_rss_sum_kb = max(self.peak_rss_sum_kb, rss_sum)

    @property
    def cpu_seconds(self) -> float:
        return sum(s.cpu for s in self.seen.values())

    @property
    def hwm_sum_kb(self) -> int:
        return sum(s.hwm_kb for s in self.seen.values())

    @property
    def processes(self) -> int:
        return len(self.seen)

    def listing(self) -> list[dict]:
        return [{"pid": pid, "cpu_seconds": round(s.cpu, 2), "peak_rss_bytes": s.hwm_kb * 1024, "cmd": s.cmd}
                for (pid, _start), s in self.seen.items()]


class TreeSampler:
    """Samples named process groups every ``interval`` seconds in a daemon thread.

    ``groups`` maps a name to a callable returning the pids to look at (a tree, or the
    PostgreSQL backends of one database). ``sample()`` takes a sample now (thread-safe).
    """

    def __init__(self, groups: dict[str, Callable[[], list[int]]], interval: float = 1.0) -> None:
        self.groups = groups
        self.usage = {name: TreeUsage() for name in groups}
        self.interval = interval
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-proc-sampler", daemon=True)

    def sample(self) -> dict[str, TreeUsage]:
        with self._lock:
            for name, pids in self.groups.items():
                try:
                    self.usage[name].update(pids())
                except Exception:  # a group that cannot be listed right now (database gone)
                    pass
            return self.usage

    def cpu(self) -> dict[str, float]:
        """CPU seconds per group, sampled now."""
        return {name: u.cpu_seconds for name, u in self.sample().items()}

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> TreeSampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle since boot (/proc/stat), to see load from other work."""
    with open("/proc/stat", "rb") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    busy = sum(fields[:8]) - idle  # guest time is already counted in user
    return busy / CLK_TCK
