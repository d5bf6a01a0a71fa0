"""Queue health at scale: with 1,000,000 rows of command history, "next command for a device",
bulk enqueue of 25,000 and the job counts stay fast.

Bulk enqueue is timed twice: a command to every device (``JobService.submit``, as the commands API
and CLI do), and the storm's path, ``POST /api/v1/profiles/{id}/push`` of a signed Wi-Fi profile to
every device of one school (all devices are moved into one school for it), in-process over the API.

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

from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import update  # noqa: E402
from sqlalchemy.orm import configure_mappers  # noqa: E402

from app.container import Container  # noqa: E402
from app.db.models import Device  # noqa: E402
from app.main import create_app  # noqa: E402
from app.services.commands import Target  # noqa: E402
from app.settings import Settings  # noqa: E402
from bench._seed import seed_devices, seed_history  # noqa: E402
from mdm.commands import build_report, new_command, parse_report  # noqa: E402
from profiles.wifi_profile import wifi_psk_profile  # noqa: E402
from tests.support.db import fresh_database, postgres_database  # noqa: E402

SCHOOL = "school-000"
TOKEN = "bench-queue-scale-token"


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


def profile_push(c: Container, devices: int) -> float:
    """Seconds for the storm's profile push to every device (all moved into one school first)."""
    with c.engine.begin() as conn:
        conn.execute(update(Device).values(school_id=SCHOOL))
    profile = c.profiles.store(school_id=SCHOOL, role=None, name="wifi",
                               payload=wifi_psk_profile(SCHOOL, "Bench", "Bench-Schueler", "Pausenbrot2026!"))
    c.tokens.ensure("bench-admin", TOKEN, "admin", c.clock())
    app = create_app(c.settings, container=c, background=False)
    with TestClient(app, base_url="https://testserver", headers={"Authorization": f"Bearer {TOKEN}"}) as api:
        api.get("/api/v1/jobs", params={"limit": 1}).raise_for_status()  # the app's first request
        t = time.perf_counter()
        r = api.post(f"/api/v1/profiles/{profile.id}/push", json={})
        took = time.perf_counter() - t
    assert r.status_code == 202 and r.json()["queued"] == devices, (r.status_code, r.text[:300])
    return took


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
        configure_mappers()  # done by a running server before its first request, not part of an enqueue
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
               "device_detail": timed(lambda: c.devices.get(rng.choice(udids)), 200),
               "profile_push_api_25k_s": round(profile_push(c, devices), 3)}
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
