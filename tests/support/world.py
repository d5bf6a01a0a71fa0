"""A running world for end-to-end tests: mock APNs, the real server over HTTPS, background workers."""

from __future__ import annotations

import asyncio
import time
from contextlib import contextmanager
from dataclasses import dataclass

from app.container import Container
from app.main import create_app
from app.settings import Settings
from simulator.mock_apns import MockAPNsThread
from tests.support.db import truncate_all
from tests.support.live import LiveServer, free_socket


@dataclass
class World:
    container: Container
    server: LiveServer
    apns: str
    ca: str
    push_ca: str
    settings: Settings
    mock: object


@contextmanager
def running_world(settings: Settings, data_dir, **overrides):
    pkidir = data_dir / "pki"
    mt = MockAPNsThread(str(pkidir / "apns-server.pem"), str(pkidir / "apns-server.key"), str(pkidir / "push-ca.pem"))
    with mt as apns_port:
        sock = free_socket()
        port = sock.getsockname()[1]
        s = settings.model_copy(update={
            "public_url": f"https://127.0.0.1:{port}", "apns_url": f"https://127.0.0.1:{apns_port}",
            "apns_ca_file": pkidir / "push-ca.pem", "push_interval_seconds": 0.05,
            "inventory_interval_seconds": 0, **overrides})
        c = Container(s)
        truncate_all(c.engine)
        app = create_app(s, container=c, background=True)
        with LiveServer(app, sock, str(pkidir / "tls.pem"), str(pkidir / "tls.key")) as srv:
            yield World(c, srv, f"https://127.0.0.1:{apns_port}", str(pkidir / "ca.pem"),
                        str(pkidir / "push-ca.pem"), s, mt.mock)
        c.close()


async def wait_until(pred, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
