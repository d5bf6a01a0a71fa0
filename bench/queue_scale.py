"""Queue health at scale: with 1,000,000 rows of command history, "next command for a device",
bulk enqueue of 25,000 and the job counts stay fast.

    python bench/queue_scale.py [--db sqlite|postgres] [--devices 25000] [--history 1000000]

Prints p50/p95/p99 in milliseconds and writes JSON to bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.container import Container  # noqa: E402
from app.services.commands import Target  # noqa: E402
from app.settings import Settings  # noqa: E402
from bench._seed import seed_devices, seed_history  # noqa: E402
from mdm.commands import build_report, new_command, parse_report  # noqa: E402
from tests.support.db import fresh_database, postgres_database  # noqa: E402


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] * 1000


def timed(fn, n: int) -> dict:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return {"n": n, "p50_ms": round(pct(out, .5), 2), "p95_ms": round(pct(out, .95), 2),
            "p99_ms": round(pct(out, .99), 2), "mean_ms": round(statistics.mean(out) * 1000, 2)}


def run(db: str, devices: int, history: int) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="schoolmdm-bench-"))
    ctx = postgres_database(only_in_postgres_run=False) if db == "postgres" else fresh_database(tmp)
    with ctx as url:
        s = Settings(data_dir=tmp / "data", database_url=url, public_url="https://127.0.0.1:8443")
        c = Container(s)
        t0 = time.perf_counter()
        udids = seed_devices(c.engine, devices)
        seed_history(c.engine, udids, history)
        seed_s = time.perf_counter() - t0
        rng = random.Random(1)
        # a fresh bulk job over the whole fleet, then devices fetching their next command
        t = time.perf_counter()
        job = c.jobs.submit(new_command("DeviceInformation"), Target(everyone=True), actor="bench")
        enqueue_s = time.perf_counter() - t
        idle = {u: parse_report(build_report(u, "Idle")) for u in rng.sample(udids, 2000)}
        it = iter(idle.items())

        def next_command():
            u, r = next(it)
            out, nxt = c.queue.report_and_next(u, r, c.clock())
            assert nxt is not None

        res = {"db": db, "devices": devices, "history_rows": history, "cpu_count": os.cpu_count(),
               "seed_s": round(seed_s, 1), "bulk_enqueue_25k_s": round(enqueue_s, 3),
               "next_command": timed(next_command, 2000),
               "job_counts": timed(lambda: c.jobs.get(job["id"]), 50),
               "device_detail": timed(lambda: c.devices.get(rng.choice(udids)), 200)}
        if db == "sqlite":
            res["db_bytes"] = sum(f.stat().st_size for f in (tmp / "schoolmdm-test.db").parent.glob("schoolmdm-test.db*"))
        c.close()
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--devices", type=int, default=25_000)
    ap.add_argument("--history", type=int, default=1_000_000)
    ap.add_argument("--json-out")
    a = ap.parse_args(argv)
    res = run(a.db, a.devices, a.history)
    res["command"] = " ".join(["python", "bench/queue_scale.py", *(argv or sys.argv[1:])])
    try:
        res["git"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                    text=True).stdout.strip()
    except OSError:
        pass
    out = Path(a.json_out or ROOT / "bench" / "results" / f"queue-scale-{a.db}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
