"""The 25,000-iPad storm: the real server, the mock APNs and a simulated fleet, measured.

    python bench/storm.py [--devices 25000] [--db sqlite|postgres] [--workers 2]
                          [--concurrency N] [--mode storm|steady] [--json-out PATH] [--keep]

The mock APNs (``python -m simulator.mock_apns``) and the server (``python -m app.cli.main
serve``) run as separate processes on a fresh data directory with its own PKI and database
(a SQLite file there, or a fresh PostgreSQL database that is dropped afterwards). N virtual
iPads enroll over HTTPS + SCEP; then

* ``storm``: one signed Wi-Fi profile is pushed to all of them through
  ``POST /api/v1/profiles/{id}/push``; the server's push worker pushes through the mock, the
  fleet answers the pushes; the run ends when the job counts every InstallProfile
  acknowledged;
* ``steady``: 8 concurrent clients send Idle with an empty queue for ``--duration`` seconds,
  then run Idle → DeviceInformation → Acknowledged for every device.

It prints a table and writes JSON (default ``bench/results/storm-<mode>-<db>-<N>.json``).
Exit status: 0 when every target was reached, 1 otherwise (with the reason), 2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import re
import shlex
import shutil
import signal
import ssl
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (str(HERE), str(ROOT)):
    if p not in sys.path:
        sys.path.insert(0, p)

import httpx  # noqa: E402

from _apns import MockStats  # noqa: E402
from _db import DEFAULT_PG_ADMIN_URL, BenchDatabase, env_without_overrides, redact  # noqa: E402
from _procs import (BenchError, Child, TreeSampler, descendants, free_port, machine_busy_seconds, start,  # noqa: E402
                    wait_until)
from _phases import SCHOOL, BenchFleet, enroll, log, steady, storm  # noqa: E402
from _report import git_revision, table, write_json  # noqa: E402
import _sampler  # noqa: E402

from app.pki_store import load_or_create  # noqa: E402
from app.settings import Settings  # noqa: E402

SCHOOL_NAME = "Bench-Grundschule"
ORG = Settings.model_fields["org_name"].default
CACHE = HERE / ".cache"
RESULTS = HERE / "results"
DEFAULT_DEVICES = {"storm": 25_000, "steady": 1_000}
DEFAULT_CONCURRENCY = {"storm": 32, "steady": 8}


# -- the run ----------------------------------------------------------------------------------
class StormBench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.mode = args.mode
        self.n = args.devices if args.devices is not None else DEFAULT_DEVICES[self.mode]
        self.concurrency = args.concurrency or DEFAULT_CONCURRENCY[self.mode]
        self.enroll_timeout = args.enroll_timeout or 120 + self.n * 0.1
        self.storm_timeout = args.storm_timeout or 120 + self.n * 0.1
        self.data_dir: Path | None = None
        self.profile_dir: Path | None = None
        self.db: BenchDatabase | None = None
        self.children: list[Child] = []
        self.sampler: TreeSampler | None = None
        self.mock_stats: MockStats | None = None
        self.t_start = time.perf_counter()
        self.result: dict = {
            "benchmark": "storm", "mode": self.mode, "db": args.db, "devices": self.n, "workers": args.workers,
            "instances": args.instances,
            "concurrency": self.concurrency, "command": shlex.join(getattr(sys, "orig_argv", sys.argv)),
            "cpu_count": os.cpu_count(), "git": git_revision(ROOT), "python": platform.python_version(),
            "platform": platform.platform(), "started_at": dt.datetime.now(dt.timezone.utc).isoformat(),
            "ok": False, "error": None,
        }

    # -- set-up -------------------------------------------------------------------------------
    def setup(self) -> None:
        a = self.args
        self.data_dir = Path(tempfile.mkdtemp(prefix="schoolmdm-bench-"))
        log(f"data directory {self.data_dir}")
        self.server_port = free_port()
        self.server_url = f"https://127.0.0.1:{self.server_port}"
        self.instance_ports = [free_port() for _ in range(a.instances)] if a.instances > 1 else []
        if self.instance_ports:  # several instances and a worker behind a TCP balancer, one public URL
            from tests.support.proxy import TCPBalancer

            self.balancer = TCPBalancer([("127.0.0.1", p) for p in self.instance_ports]).__enter__()
            self.server_url = f"https://127.0.0.1:{self.balancer.port}"
        self.pki = load_or_create(self.data_dir, org=ORG, public_url=self.server_url)
        self.ca = str(self.pki.path("ca.pem"))
        self.push_ca = str(self.pki.path("push-ca.pem"))
        if a.profile_server:
            self.profile_dir = self.data_dir / "profile"
        self.db = BenchDatabase.postgres(a.pg_url) if a.db == "postgres" else BenchDatabase.sqlite(self.data_dir)
        log(f"database: {self.db.describe()}")
        self.result["database"] = {"kind": self.db.kind, "url": redact(self.db.url)}
        if self.db.kind == "postgres":
            self.result["database"]["connections_at_start"] = self.db.connections()
        self.start_mock()
        self.start_server()
        groups = {"server": lambda: [p for c in self.servers for p in descendants(c.pid)],
                  "mock_apns": lambda: descendants(self.mock.pid)}
        if self.db.kind == "postgres":
            groups["postgres"] = self.db.backend_pids
        self.sampler = TreeSampler(groups, interval=1.0).__enter__()
        self.mock_stats = MockStats(self.apns_url, self.push_ca)
        self.seed()

    def start_mock(self) -> None:
        assert self.data_dir is not None
        pki = self.pki
        log_path = self.data_dir / "mock-apns.log"
        self.mock = start("mock APNs", [sys.executable, "-m", "simulator.mock_apns", "--port", "0",
                                        "--cert", str(pki.path("apns-server.pem")),
                                        "--key", str(pki.path("apns-server.key")),
                                        "--client-ca", str(pki.path("push-ca.pem"))],
                          env={**env_without_overrides(), "PYTHONUNBUFFERED": "1"}, log_path=log_path, cwd=ROOT)
        self.children.append(self.mock)

        def port() -> int | None:
            m = re.search(r"listening on https://[^:]+:(\d+)", log_path.read_text(errors="replace"))
            return int(m.group(1)) if m else None

        self.apns_url = f"https://127.0.0.1:{wait_until(port, 30, 'mock APNs listening', child=self.mock)}"
        log(f"mock APNs on {self.apns_url} (pid {self.mock.pid})")

    def server_env(self) -> dict[str, str]:
        assert self.data_dir is not None and self.db is not None
        return {**env_without_overrides(), "PYTHONUNBUFFERED": "1",
                "SCHOOLMDM_DATA_DIR": str(self.data_dir), "SCHOOLMDM_DATABASE_URL": self.db.url,
                "SCHOOLMDM_PUBLIC_URL": self.server_url, "SCHOOLMDM_APNS_URL": self.apns_url,
                "SCHOOLMDM_APNS_CA_FILE": self.push_ca, "SCHOOLMDM_LOG_LEVEL": "WARNING",
                "SCHOOLMDM_INVENTORY_INTERVAL_SECONDS": "0",
                **(_sampler.prepare(self.profile_dir) if self.profile_dir is not None else {})}

    def phase(self, name: str) -> None:
        """Tell the server's stack sampler (``--profile-server``) which phase its samples belong to."""
        if self.profile_dir is not None:
            _sampler.set_phase(self.profile_dir, name)

    def start_server(self) -> None:
        assert self.data_dir is not None
        ctx = ssl.create_default_context(cafile=self.ca)
        if self.instance_ports:
            web = {**self.server_env(), "SCHOOLMDM_BACKGROUND": "false"}
            self.servers = [start(f"server {i + 1}", [sys.executable, "-m", "app.cli.main", "serve", "--port",
                                                      str(port), "--workers", str(self.args.workers)],
                                  env=web, log_path=self.data_dir / f"server-{i + 1}.log", cwd=ROOT)
                            for i, port in enumerate(self.instance_ports)]
            self.servers.append(start("worker", [sys.executable, "-m", "app.cli.main", "worker"],
                                      env=self.server_env(), log_path=self.data_dir / "worker.log", cwd=ROOT))
        else:
            self.servers = [start("server", [sys.executable, "-m", "app.cli.main", "serve", "--port",
                                             str(self.server_port), "--workers", str(self.args.workers)],
                                  env=self.server_env(), log_path=self.data_dir / "server.log", cwd=ROOT)]
        self.server = self.servers[0]
        self.children.extend(self.servers)

        def ready() -> bool:
            try:
                return httpx.get(f"{self.server_url}/readyz", verify=ctx, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        t0 = time.perf_counter()
        wait_until(ready, self.args.start_timeout, "server /readyz", child=self.server, interval=0.2)
        self.result["server_start_seconds"] = round(time.perf_counter() - t0, 2)
        log(f"server on {self.server_url} ({len(self.instance_ports) or 1} instance(s), pid {self.server.pid}, "
            f"{self.args.workers} server worker(s) each) "
            f"ready in {self.result['server_start_seconds']} s")

    def seed(self) -> None:
        """The school, an admin token and the signed Wi-Fi profile, straight into the database."""
        from app.container import Container
        from app.services.enrollment import hash_secret, new_secret
        from profiles.wifi_profile import wifi_psk_profile

        assert self.data_dir is not None and self.db is not None
        c = Container(Settings(data_dir=self.data_dir, database_url=self.db.url, public_url=self.server_url,
                               org_name=ORG))
        try:
            now = c.clock()
            self.enroll_token = new_secret()
            c.schools.upsert(SCHOOL, SCHOOL_NAME, hash_secret(self.enroll_token), now)
            self.api_token = "bench_" + new_secret(24)
            c.tokens.ensure("bench-admin", self.api_token, "admin", now)
            self.profile_payload = wifi_psk_profile(SCHOOL, ORG, "Bench-Schueler", "Pausenbrot2026!")
            if self.mode == "storm":
                self.profile = c.profiles.store(school_id=SCHOOL, role=None, name="wifi",
                                                payload=self.profile_payload)
        finally:
            c.close()

    # -- measuring ------------------------------------------------------------------------------
    def fleet(self) -> BenchFleet:
        CACHE.mkdir(parents=True, exist_ok=True)
        ignore = CACHE / ".gitignore"
        if not ignore.exists():
            ignore.write_text("*\n")
        return BenchFleet(ca_file=self.ca, key_cache_dir=str(CACHE / "keys"), session_concurrency=self.concurrency,
                          max_connections=self.concurrency, record_latency=True,
                          signature_cache=max(8192, self.n))  # every device's Idle, as at 2,000

    def api(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.server_url, verify=ssl.create_default_context(cafile=self.ca),
                                 headers={"Authorization": f"Bearer {self.api_token}"}, timeout=600.0)

    def cpu_now(self) -> dict[str, float]:
        assert self.sampler is not None
        out = self.sampler.cpu()
        out["simulator"] = time.process_time()
        out["machine"] = machine_busy_seconds()
        return out

    def cpu_phase(self, name: str, before: dict, after: dict, wall: float) -> None:
        """CPU seconds of server, mock, PostgreSQL backends and simulator over a phase, and how
        busy the whole machine was (``other``: work that is not this bench, e.g. tests)."""
        seconds = {k: round(after[k] - before.get(k, 0.0), 2) for k in after if k != "machine"}
        ours = sum(seconds.values())
        machine = after["machine"] - before["machine"]
        cores = os.cpu_count() or 1
        self.result.setdefault("cpu", {})["phase"] = {
            "name": name, "seconds": seconds, "other_processes_seconds": round(max(0.0, machine - ours), 2),
            "wall_seconds": round(wall, 3),
            "utilisation": round(ours / (wall * cores), 3) if wall > 0 else None,
            "machine_utilisation": round(machine / (wall * cores), 3) if wall > 0 else None}

    async def scenario(self) -> None:
        fleet = self.fleet()
        api = self.api()
        listener = None
        try:
            if self.mode == "storm":
                listener = asyncio.ensure_future(fleet.listen(self.apns_url, self.push_ca))
            await enroll(self, fleet)
            if self.mode == "storm":
                await storm(self, fleet, api)
            else:
                await steady(self, fleet, api)
        finally:
            stats = fleet.stats()
            stats.pop("latency_ms", None)
            stats.pop("commands", None)
            self.result["simulator"] = {k: stats[k] for k in (
                "devices", "enrolled", "sessions", "session_errors", "errors", "errors_by_stage", "http_requests",
                "http_errors", "pushes", "cpu_seconds", "wall_seconds", "keys", "signature_cache",
                "double_applications")}
            if listener is not None:
                listener.cancel()
                await asyncio.gather(listener, return_exceptions=True)
            await fleet.aclose()
            await api.aclose()

    def collect(self) -> None:
        """Process and database figures; safe to call after a failure."""
        if self.sampler is not None:
            usage = self.sampler.sample()
            srv = usage["server"]
            self.result["server"] = {"peak_rss_bytes": srv.hwm_sum_kb * 1024,
                                     "peak_rss_sum_bytes": srv.peak_rss_sum_kb * 1024,
                                     "processes": srv.processes, "cpu_seconds": round(srv.cpu_seconds, 2),
                                     "process_list": srv.listing()}
            m = usage["mock_apns"]
            self.result["mock_apns"] = {"peak_rss_bytes": m.hwm_sum_kb * 1024, "cpu_seconds": round(m.cpu_seconds, 2)}
            total = {k: round(u.cpu_seconds, 2) for k, u in usage.items()}
            total["simulator"] = round(time.process_time(), 2)
            self.result.setdefault("simulator", {})["peak_rss_bytes"] = _self_hwm_kb() * 1024
            self.result.setdefault("cpu", {})["total"] = total
            if "postgres" in usage:
                self.result["postgres_backends"] = {"processes": usage["postgres"].processes,
                                                    "peak_connections": usage["postgres"].peak_count,
                                                    # PostgreSQL's shared buffers count in every backend's VmHWM
                                                    "sum_vmhwm_bytes": usage["postgres"].hwm_sum_kb * 1024}
        if self.db is not None:
            try:
                self.result["database"].update(self.db.size_bytes())
            except Exception as e:  # report what we have
                self.result["database"]["size_error"] = f"{type(e).__name__}: {e}"

    def run(self) -> dict:
        self.setup()
        asyncio.run(self.scenario())
        self.result["ok"] = True
        return self.result

    def cleanup(self) -> None:
        if getattr(self, "balancer", None) is not None:
            self.balancer.__exit__(None, None, None)
        if self.mock_stats is not None:
            self.mock_stats.close()
        if self.sampler is not None:
            self.sampler.__exit__(None, None, None)
        for child in reversed(self.children):
            t0 = time.perf_counter()
            try:
                how = child.stop()
            except Exception as e:
                log(f"could not stop {child.name} (pid {child.pid}): {e}")
            else:
                log(f"stopped {child.name} (pid {child.pid}, {how}) in {time.perf_counter() - t0:.1f} s")
        if self.profile_dir is not None:
            try:
                report = _sampler.render(_sampler.merge(self.profile_dir))
                path = self.args.profile_server
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(report + "\n")
                self.result["server_profile"] = str(path)
                log(f"server profile (CPU-weighted stacks of every server thread): {path}")
            except OSError as e:
                log(f"could not write the server profile: {e}")
        if self.db is not None:
            try:
                self.db.drop()
            except Exception as e:
                log(f"could not drop {self.db.describe()}: {e}")
        if self.data_dir is not None:
            if self.args.keep:
                log(f"kept {self.data_dir} (server.log, mock-apns.log, pki/, database)")
            else:
                shutil.rmtree(self.data_dir, ignore_errors=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="bench/storm.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=("storm", "steady"), default="storm", help="default storm")
    ap.add_argument("--devices", type=int, default=None,
                    help="iPads to enroll (default 25000 for storm, 1000 for steady)")
    ap.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite", help="default sqlite")
    ap.add_argument("--pg-url", default=DEFAULT_PG_ADMIN_URL,
                    help=f"PostgreSQL maintenance database used to create and drop the bench database "
                         f"(default {DEFAULT_PG_ADMIN_URL})")
    ap.add_argument("--workers", type=int, default=2, help="server worker processes (default 2)")
    ap.add_argument("--instances", type=int, default=1,
                    help="server instances behind a TCP balancer, plus one `schoolmdm worker` (default 1)")
    ap.add_argument("--concurrency", type=int, default=None,
                    help="concurrent device sessions and enrollments (default 32 for storm, 8 for steady)")
    ap.add_argument("--duration", type=float, default=20.0, help="steady mode: seconds of idle check-ins (default 20)")
    ap.add_argument("--json-out", type=Path, default=None,
                    help="where to write the JSON (default bench/results/storm-<mode>-<db>-<N>.json)")
    ap.add_argument("--keep", action="store_true", help="keep the data directory (logs, PKI, SQLite file)")
    ap.add_argument("--profile-server", type=Path, default=None, metavar="PATH",
                    help="sample the server's threads (CPU-weighted stacks) and write a text report per phase")
    ap.add_argument("--start-timeout", type=float, default=90.0, help="seconds for the server to become ready (default 90)")
    ap.add_argument("--enroll-timeout", type=float, default=None, help="seconds for enrollment (default 120 + N/10)")
    ap.add_argument("--storm-timeout", type=float, default=None,
                    help="seconds for every command to be acknowledged (default 120 + N/10)")
    args = ap.parse_args(argv)
    if args.devices is not None and args.devices < 1:
        ap.error("--devices must be at least 1")
    if args.workers < 1 or (args.concurrency is not None and args.concurrency < 1):
        ap.error("--workers and --concurrency must be at least 1")
    return args


def _self_hwm_kb() -> int:
    """Peak resident memory of this process (the simulator and the bench)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def _terminate(signum: int, _frame) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that end the children


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench = StormBench(args)
    out = args.json_out or RESULTS / f"storm-{bench.mode}-{args.db}-{bench.n}.json"
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    code = 1
    try:
        bench.run()
        code = 0
    except BenchError as e:
        bench.result["error"] = str(e)
    except KeyboardInterrupt:
        bench.result["error"] = "interrupted"
        code = 130
    except SystemExit as e:
        bench.result["error"] = f"terminated ({e.code})"
        code = e.code if isinstance(e.code, int) else 1
    except Exception as e:
        bench.result["error"] = f"{type(e).__name__}: {e}"
        import traceback

        traceback.print_exc()
    finally:
        try:
            if code != 0:
                for child in bench.children:
                    if child.log_tail():
                        log(f"last lines of {child.name} log:\n{child.log_tail()}")
            bench.collect()
        finally:
            bench.cleanup()
    bench.result["wall_seconds"] = round(time.perf_counter() - bench.t_start, 1)
    write_json(out, bench.result)
    print(table(bench.result))
    print(f"\nJSON: {out}")
    if code != 0:
        print(f"storm: FAILED: {bench.result['error']}", file=sys.stderr)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
