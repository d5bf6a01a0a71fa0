"""Support-desk speed: with 25,000 devices in the database, the device list and search through the
real API (uvicorn over HTTPS on this machine) answer in under 200 ms.

    python bench/device_search.py [--db sqlite|postgres] [--devices 25000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.container import Container  # noqa: E402
from app.main import create_app  # noqa: E402
from app.pki_store import load_or_create  # noqa: E402
from app.settings import Settings  # noqa: E402
from bench._seed import seed_devices  # noqa: E402
from bench.queue_scale import pct  # noqa: E402
from tests.support.db import fresh_database, postgres_database  # noqa: E402
from tests.support.live import LiveServer, free_socket  # noqa: E402

TOKEN = "bench-admin-token"


def run(db: str, devices: int, n: int) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="schoolmdm-bench-"))
    pki = load_or_create(tmp / "data", org="Bench", public_url="https://127.0.0.1:8443")
    ctx = postgres_database(only_in_postgres_run=False) if db == "postgres" else fresh_database(tmp)
    with ctx as url:
        s = Settings(data_dir=tmp / "data", database_url=url, public_url="https://127.0.0.1:8443",
                     background=False, token_rate_per_second=0)
        c = Container(s)
        udids = seed_devices(c.engine, devices)
        c.tokens.ensure("bench", TOKEN, "admin", c.clock())
        rng = random.Random(3)
        sock = free_socket()
        with LiveServer(create_app(s, container=c, background=False), sock, str(pki.path("tls.pem")),
                        str(pki.path("tls.key"))) as srv, \
                httpx.Client(base_url=srv.url, verify=str(pki.path("ca.pem")),
                             headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            cases = {
                "list first page": lambda: {"limit": 50},
                "list page 200 sorted by last seen": lambda: {"limit": 50, "offset": 10_000, "sort": "last_seen",
                                                              "desc": True},
                "list one school": lambda: {"school": f"school-{rng.randrange(154):03d}", "limit": 100},
                "search exact serial": lambda: {"q": f"DMP{rng.randrange(devices):09d}"},
                "search UDID": lambda: {"q": rng.choice(udids)},
                "search name fragment": lambda: {"q": f"iPad-{rng.randrange(devices):05d}"},
            }
            res = {"db": db, "devices": devices, "cpu_count": os.cpu_count(), "cases": {}}
            http.get("/api/v1/devices").raise_for_status()  # warm up
            for name, params in cases.items():
                times = []
                for _ in range(n):
                    t = time.perf_counter()
                    r = http.get("/api/v1/devices", params=params())
                    times.append(time.perf_counter() - t)
                    r.raise_for_status()
                res["cases"][name] = {"p50_ms": round(pct(times, .5), 1), "p95_ms": round(pct(times, .95), 1),
                                      "max_ms": round(max(times) * 1000, 1)}
            t = time.perf_counter()
            http.get(f"/api/v1/devices/{rng.choice(udids)}").raise_for_status()
            res["device detail ms"] = round((time.perf_counter() - t) * 1000, 1)
        c.close()
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--devices", type=int, default=25_000)
    ap.add_argument("-n", type=int, default=50, help="requests per case")
    a = ap.parse_args(argv)
    res = run(a.db, a.devices, a.n)
    res["command"] = " ".join(["python", "bench/device_search.py", *(argv or sys.argv[1:])])
    out = ROOT / "bench" / "results" / f"device-search-{a.db}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
