"""Device endpoints: ``PUT /mdm/checkin`` and ``PUT /mdm/connect`` (the ServerURL).

Every device request comes here, so they are plain ASGI in front of FastAPI's router and its
middleware: no route matching over the whole API, no request object, no dependency resolution
(~0.07 ms of CPU per request, measured in-process against the router). The request limits
(URL, timeout) still wrap them, and MDMError becomes the same reply as everywhere else
(``app.errors.mdm_error_response``).

Where the work runs depends on the database:

* SQLite: on the event loop. Its statements take microseconds, reads never wait (WAL), and writes
  queue one at a time at the write gate anyway (``app.db.sqlite_gate``). Handing each request to
  a thread and back cost more than the work: in a 4,000-iPad storm, 3.7 ms of server CPU per iPad
  on threads against 2.6 ms on the loop (two requests each), and 13.0 s against 10.0 s of wall.
  The price: while a request waits for the write gate (another writer, at worst a bulk enqueue
  of a few hundred ms), this worker's loop waits too; the other workers go on.
* PostgreSQL: on a device thread (``Container.device_threads``). A statement there is a network
  round trip, and an outage must not stall the loop on connect timeouts.
"""

from __future__ import annotations

import asyncio
import time

from fastapi.responses import JSONResponse

from app.errors import error_body, mdm_error_response
from app.routes.body import ClientGone, read_asgi_body
from app.storage.sql_raw import held_connection
from mdm.checkin import Authenticate, parse_checkin
from mdm.commands import parse_report
from mdm.errors import MDMError

PLIST = b"application/xml"


class DeviceEndpoints:
    """ASGI middleware: answers the two device paths, passes everything else on to ``app``."""

    def __init__(self, app, *, container) -> None:
        self.app = app
        self.c = container
        s = container.settings
        self.settings = s
        self.proxy_header = s.client_cert_header.lower().encode("latin-1") if s.client_cert_header else None
        self.routes = {"/mdm/checkin": (self._checkin, s.max_checkin_bytes, "checkin"),
                       "/mdm/connect": (self._connect, s.max_connect_bytes, "connect")}
        self.on_loop = container.engine.dialect.name == "sqlite"

    # -- the work (on the loop or a device thread: see the module's docstring) ------------------
    def _checkin(self, raw: bytes, signature: str | None, proxy: str | None) -> bytes:
        with held_connection(self.c.engine):  # one checkout for the request's reads and writes
            return self._checkin_work(raw, signature, proxy)

    def _checkin_work(self, raw: bytes, signature: str | None, proxy: str | None) -> bytes:
        c, s = self.c, self.settings
        auth = c.device_auth
        signer = auth.signer(signature, raw, proxy)  # before parsing: unsigned bodies never reach the parser
        msg = parse_checkin(raw, max_bytes=s.max_checkin_bytes, max_depth=s.max_plist_depth)
        c.device_limiter.check(msg.udid)
        if isinstance(msg, Authenticate):
            fp = auth.for_authenticate(msg.udid, signer)
        else:
            fp = auth.for_enrolled(msg.udid, signer)
        out = c.checkin.handle(msg, fp)
        c.metrics.checkins.labels(msg.message_type, "ok").inc()
        return out

    def _authenticated(self, raw: bytes, signature: str | None, proxy: str | None):
        c, s = self.c, self.settings
        auth = c.device_auth
        signer = auth.signer(signature, raw, proxy)
        report = parse_report(raw, max_bytes=s.max_connect_bytes, max_depth=s.max_plist_depth)
        c.device_limiter.check(report.udid)
        return report, auth.enrolled(report.udid, signer, allow_authenticated=False), signer

    def _answer(self, report, device, signer) -> bytes:
        out = self.c.connect.handle(report, device=device, signer=signer)
        self.c.metrics.reports.labels(report.status).inc()
        return out

    def _connect(self, raw: bytes, signature: str | None, proxy: str | None) -> bytes:
        with held_connection(self.c.engine):  # one checkout for the request's reads and writes
            return self._answer(*self._authenticated(raw, signature, proxy))

    # -- ASGI -----------------------------------------------------------------------------------
    async def __call__(self, scope, receive, send) -> None:
        route = self.routes.get(scope["path"]) if scope["type"] == "http" else None
        if route is None:
            return await self.app(scope, receive, send)
        work, limit, kind = route
        if scope["method"] != "PUT":
            reply = JSONResponse(error_body("method_not_allowed", "Method Not Allowed"), 405, headers={"Allow": "PUT"})
            return await reply(scope, receive, send)
        declared = signature = proxy = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value.decode("latin-1")
            elif name == b"mdm-signature":
                signature = value.decode("latin-1")
            elif name == self.proxy_header:
                proxy = value.decode("latin-1")
        metrics = self.c.metrics
        t0 = time.perf_counter()
        try:
            raw = await read_asgi_body(receive, declared, limit)
            if self.on_loop:
                out = work(raw, signature, proxy)
            else:
                out = await asyncio.get_running_loop().run_in_executor(self.c.device_threads, work, raw,
                                                                        signature, proxy)
        except ClientGone:
            return
        except MDMError as e:
            if kind == "checkin":
                metrics.checkins.labels("unknown", e.code).inc()
            return await mdm_error_response(e, scope["method"], scope["path"])(scope, receive, send)
        finally:
            metrics.latency.labels(kind).observe(time.perf_counter() - t0)
        headers = [(b"content-length", str(len(out)).encode())]
        if out:
            headers.append((b"content-type", PLIST))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": out})
