"""``schoolmdm demo`` (what ``make run`` starts): the service on SQLite with a demo city and a fleet.

One process runs the mock APNs, the real server over HTTPS (with its push worker,
webhooks and scheduler) and a fleet of simulated iPads that enroll through SCEP
and answer pushes. It prints the URLs and tokens, then serves until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import threading
import time
from pathlib import Path

import typer
import uvicorn

from app.cli.common import CliError, EXIT_UNAVAILABLE, console, handle_errors

ROOT = Path(__file__).resolve().parents[2]
CITY = ROOT / "examples" / "city"


def _bind(host: str, port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((host, port))
    except OSError as e:
        raise CliError(f"cannot listen on {host}:{port} ({e.strerror}); pass --port", EXIT_UNAVAILABLE) from None
    s.listen(1024)
    return s


def _seed(c, school: str) -> dict:
    """Import the example city, issue enrollment URLs and demo tokens (fresh each start)."""
    c.blueprints.import_dir(CITY, actor="demo")
    from app.services.enrollment import hash_secret, new_secret

    urls = {}
    for sc in c.schools.list():
        token = new_secret()
        c.schools.upsert(sc["id"], sc["name"], hash_secret(token), c.clock())
        urls[sc["id"]] = (token, f"{c.settings.public_url.rstrip('/')}/enroll/{sc['id']}?token={token}")
    if school not in urls:
        raise CliError(f"no school {school!r} in the demo city; choose one of {', '.join(urls)}")
    tokens = {}
    for name, role in (("demo-admin", "admin"), ("demo-technician", "technician"), ("demo-support", "support")):
        tokens[role] = "smdm_" + secrets.token_urlsafe(24)
        c.tokens.ensure(name, tokens[role], role, c.clock())
    return {"urls": urls, "tokens": tokens}


def register(app: typer.Typer) -> None:
    @app.command("demo")
    @handle_errors
    def demo(devices: int = typer.Option(10, "--devices", help="simulated iPads to enroll"),
             school: str = typer.Option("gs-lindenhof", "--school"),
             host: str = "127.0.0.1", port: int = 8443, apns_port: int = 2197,
             duration: float = typer.Option(0, help="stop after this many seconds (0 = until Ctrl-C)"),
             keep: bool = typer.Option(False, "--keep", help="keep the demo database of the last run")) -> None:
        """Run the service with a demo city, the mock APNs and a simulated fleet; print the URLs.

        The demo uses its own SQLite database, ``<data dir>/demo.db``, fresh at each start (the
        simulated iPads of an earlier run are gone), unless ``--keep``.
        """
        from app.container import Container
        from app.db.migrate import upgrade
        from app.http_protocol import HTTP_PROTOCOL
        from app.main import create_app
        from app.pki_store import load_or_create
        from app.settings import get_settings
        from simulator.fleet import Fleet
        from simulator.mock_apns import MockAPNsThread

        base = get_settings()
        logging.basicConfig(level="WARNING", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        server_sock = _bind(host, port)
        _bind("127.0.0.1", apns_port).close()
        url = f"https://{host}:{port}"
        pki = load_or_create(base.data_dir, org=base.org_name, public_url=url,
                             signing_key=base.profile_signing_key)
        db = Path(base.data_dir) / "demo.db"
        if not keep:
            for f in (db, db.with_name("demo.db-wal"), db.with_name("demo.db-shm")):
                f.unlink(missing_ok=True)
        s = base.model_copy(update={"public_url": url, "apns_url": f"https://127.0.0.1:{apns_port}",
                                    "apns_ca_file": pki.path("push-ca.pem"), "database_url": f"sqlite:///{db}"})
        upgrade(s.database_url)
        c = Container(s)
        seeded = _seed(c, school)
        mock = MockAPNsThread(str(pki.path("apns-server.pem")), str(pki.path("apns-server.key")),
                              str(pki.path("push-ca.pem")), port=apns_port)
        mock.__enter__()
        server = uvicorn.Server(uvicorn.Config(create_app(s, container=c), ssl_certfile=str(pki.path("tls.pem")),
                                               ssl_keyfile=str(pki.path("tls.key")), log_level="warning",
                                               access_log=False, http=HTTP_PROTOCOL))
        thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[server_sock])), daemon=True)
        thread.start()
        while not server.started:
            if not thread.is_alive():
                raise CliError("the server did not start", EXIT_UNAVAILABLE)
            time.sleep(0.05)

        async def fleet_main() -> None:
            fleet = Fleet(ca_file=str(pki.path("ca.pem")))
            listener = asyncio.create_task(fleet.listen(mock.url, str(pki.path("push-ca.pem"))))
            try:
                await fleet.enroll_all(devices, url, school, seeded["urls"][school][0])
                job = await asyncio.to_thread(c.blueprint_push.push, school, actor="demo")
                _banner(url, mock.url, seeded, school, len(fleet.enrolled()), job, pki.path("ca.pem"), db)
                await asyncio.wait({listener}, timeout=duration or None)
            finally:
                listener.cancel()
                await asyncio.gather(listener, return_exceptions=True)
                await fleet.aclose()

        try:
            asyncio.run(fleet_main())
        except KeyboardInterrupt:
            console.print("stopping")
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            mock.__exit__(None, None, None)
            c.close()


def _banner(url, apns, seeded, school, enrolled, job, ca, db) -> None:
    t = seeded["tokens"]
    console.print(f"""
[bold green]schoolmdm demo is running[/bold green]
  dashboard      {url}/            (log in with a token below)
  API docs       {url}/docs
  health         {url}/healthz   metrics {url}/metrics
  enroll URL     {seeded['urls'][school][1]}
  admin token    {t['admin']}
  technician     {t['technician']}
  support        {t['support']}
  mock APNs      {apns}
  fleet          {enrolled} simulated iPads enrolled at {school}; blueprint v{job['version']} pushed (job {job['job_id']})
  TLS            development CA: {ca}  (curl --cacert {ca} {url}/healthz)
  database       {db}  (fresh at each start; --keep keeps it)
Press Ctrl-C to stop.""", highlight=False, soft_wrap=True)
