"""The benchmark's stack sampler (``bench/_sampler.py``, ``bench/storm.py --profile-server``).

It reads every thread's CPU clock while threads come and go. Through
``pthread_getcpuclockid`` a thread that ended between ``sys._current_frames()`` and the
read left a dangling ``pthread_t``, and the profiled server worker died of SIGSEGV. The
sampler runs in a child process here, so a crash is a failed test, not a dead pytest.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import _sampler  # noqa: E402

sys.path.remove(str(ROOT / "bench"))

CHILD = textwrap.dedent("""
    import sys, threading, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[2])
    import _sampler

    def spin_in_named_function(stop):
        x = 0
        while not stop.is_set():
            x += 1

    s = _sampler.Sampler(Path(sys.argv[1]), interval=0.0002)
    s._thread.start()
    stop = threading.Event()
    busy = threading.Thread(target=spin_in_named_function, args=(stop,))
    busy.start()
    deadline = time.monotonic() + 2.0
    churned = 0
    while time.monotonic() < deadline:  # short-lived threads, ending while the sampler runs
        ts = [threading.Thread(target=sum, args=(range(2000),)) for _ in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        churned += len(ts)
    stop.set()
    busy.join()
    s.stop()
    print(churned)
""")


def test_sampler_survives_threads_ending_and_charges_cpu_to_the_running_function(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path), str(ROOT / "bench")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"sampler child exited {r.returncode}: {r.stderr[-2000:]}"
    assert int(r.stdout.strip()) > 50
    (profile,) = tmp_path.glob("profile-*.json")
    phase = json.loads(profile.read_text())["phases"]["start"]
    assert phase["samples"] > 100
    spin = sum(v for k, v in phase["incl"].items() if k.endswith(":spin_in_named_function"))
    assert spin > 0.1 * phase["cpu"], phase["incl"]


def test_thread_clock_is_this_threads_cpu_clock_and_a_dead_thread_is_an_error() -> None:
    import time

    import pytest

    before = time.thread_time()
    mine = time.clock_gettime(_sampler._thread_clock(threading.get_native_id()))
    after = time.thread_time()
    assert before <= mine <= after
    t = threading.Thread(target=lambda: None)
    t.start()
    t.join()  # (returns before the kernel thread is gone: wait for that)
    deadline = time.monotonic() + 5
    while Path(f"/proc/self/task/{t.native_id}").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(OSError):
        time.clock_gettime(_sampler._thread_clock(t.native_id))
