"""``schoolmdm demo`` (what ``make run`` starts) comes up, enrolls its fleet and prints the URLs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.live import free_socket

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_starts_and_prints_urls(tmp_path):
    ports = [free_socket(), free_socket()]
    port, apns = (s.getsockname()[1] for s in ports)
    for s in ports:
        s.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCHOOLMDM_", "DATABASE_URL"))}
    env["SCHOOLMDM_DATA_DIR"] = str(tmp_path / "var")
    p = subprocess.run([sys.executable, "-m", "app.cli.main", "demo", "--devices", "4", "--port", str(port),
                        "--apns-port", str(apns), "--duration", "3"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=240)
    assert p.returncode == 0, p.stdout + p.stderr
    out = p.stdout
    assert f"https://127.0.0.1:{port}/docs" in out
    assert re.search(rf"https://127\.0\.0\.1:{port}/enroll/gs-lindenhof\?token=\S+", out)
    assert "4 simulated iPads enrolled at gs-lindenhof" in out
    assert re.search(r"admin token\s+smdm_\S+", out)
    assert (tmp_path / "var" / "demo.db").exists()
