"""Server processes for tests that kill and restart them."""

from __future__ import annotations

import os
import ssl
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def clean_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCHOOLMDM_", "DATABASE_URL"))}
    env.update(extra)
    return env


class ServerProcess:
    """``schoolmdm ARGS`` in its own process group, its output in a log file."""

    def __init__(self, args: list[str], env: dict, log: Path) -> None:
        self.args, self.env, self.log = args, env, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> "ServerProcess":
        with self.log.open("a") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "app.cli.main", *self.args], cwd=ROOT, env=self.env,
                                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def wait_ready(self, url: str, ca: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.args} exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/readyz", verify=ssl.create_default_context(cafile=ca), timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{self.args} not ready: {self.log.read_text()[-3000:]}")

    def kill9(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=20)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
