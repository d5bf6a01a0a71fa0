"""Running things: ``serve``, ``mock-apns``, ``simulate``."""

from __future__ import annotations

import asyncio
import os
import sys
import logging
from typing import Optional

import typer

from app.cli.common import console, container, handle_errors, print_json


def _logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def server_environ(environ) -> dict:
    """The environment for the server processes: glibc's malloc keeps up to 8 arenas per core for
    a process's threads (each device request runs on one of up to 40), and their fragments stayed
    resident; two arenas are plenty for a GIL-bound process. An explicit setting wins."""
    env = dict(environ)
    env.setdefault("MALLOC_ARENA_MAX", "2")
    return env


def register(app: typer.Typer) -> None:
    @app.command("serve")
    @handle_errors
    def serve(host: Optional[str] = None, port: Optional[int] = None,
              workers: int = typer.Option(1, help="server processes (on Linux each with a SO_REUSEPORT socket of its own)")) -> None:
        """Migrate the database and serve devices, the API and the dashboard."""
        import uvicorn

        c = container()
        s = c.settings
        _logging(s.log_level)
        pki = c.pki
        ssl = {"ssl_certfile": str(pki.path("tls.pem")), "ssl_keyfile": str(pki.path("tls.key"))} if s.tls else {}
        c.close()
        if workers > 1:
            # exec a lean supervisor in this process (same pid, so signals still reach it) instead of
            # keeping the CLI's imports (~90 MiB) resident: on Linux our own, which gives every worker
            # a SO_REUSEPORT socket of its own (app.supervisor says why); elsewhere uvicorn's
            if sys.platform.startswith("linux"):
                argv = [sys.executable, "-m", "app.supervisor", "--workers", str(workers)]
            else:
                argv = [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory",
                        "--workers", str(workers), "--no-access-log"]
            argv += ["--host", host or s.host, "--port", str(port or s.port), "--log-level", s.log_level.lower()]
            for k, v in ssl.items():
                argv += ["--" + k.replace("_", "-"), v]
            sys.stdout.flush()
            sys.stderr.flush()
            os.execve(sys.executable, argv, server_environ(os.environ))
        from app.http_protocol import HTTP_PROTOCOL

        uvicorn.run("app.main:create_app", factory=True, host=host or s.host, port=port or s.port,
                    workers=workers, log_level=s.log_level.lower(), access_log=False, http=HTTP_PROTOCOL, **ssl)

    @app.command("worker")
    @handle_errors
    def worker() -> None:
        """Run background work only (pushes, webhooks, inventory refresh, retention); scale it apart from serve."""
        import signal

        from app.background import run_worker

        c = container()
        _logging(c.settings.log_level)

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            logging.getLogger("schoolmdm").info("worker started")
            await run_worker(c, stop)

        asyncio.run(main())
        c.close()

    @app.command("mock-apns")
    @handle_errors
    def mock_apns(host: str = "127.0.0.1", port: int = 2197) -> None:
        """Run the mock APNs server with the development push PKI from the data directory."""
        from simulator.mock_apns import run

        pki = container(migrate=False).pki
        run(host, port, str(pki.path("apns-server.pem")), str(pki.path("apns-server.key")),
            str(pki.path("push-ca.pem")))

    @app.command("simulate")
    @handle_errors
    def simulate(devices: int = typer.Option(10, "--devices"), school: str = typer.Option(..., "--school"),
                 server: str = typer.Option(..., "--server", help="https://host:port"),
                 token: str = typer.Option(..., "--token", help="the school's enrollment token"),
                 apns: str = typer.Option("https://127.0.0.1:2197", "--apns", help="mock APNs base URL"),
                 ca_file: Optional[str] = typer.Option(None, "--ca-file", help="CA to verify the server's TLS"),
                 insecure: bool = typer.Option(False, "--insecure", help="do not verify the server's TLS"),
                 duration: Optional[float] = typer.Option(None, help="stop after this many seconds"),
                 json_out: bool = typer.Option(False, "--json")) -> None:
        """Run N virtual iPads against a server: enroll over SCEP, then answer pushes."""
        from simulator.fleet import run_fleet

        pki = container(migrate=False).pki
        fleet = asyncio.run(run_fleet(devices=devices, school=school, server=server, token=token,
                                      apns_feed=apns, apns_ca=str(pki.path("push-ca.pem")),
                                      ca_file=ca_file, insecure=insecure, duration=duration))
        stats = fleet.stats()
        print_json(stats) if json_out else console.print(stats)
