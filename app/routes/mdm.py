"""Device endpoints: ``PUT /mdm/checkin`` and ``PUT /mdm/connect`` (the ServerURL)."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Request, Response

from app.routes.body import read_body
from mdm.checkin import Authenticate, parse_checkin
from mdm.commands import parse_report
from mdm.errors import MDMError

PLIST = "application/xml"


def make_mdm_router(container) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    settings = container.settings
    metrics = container.metrics
    header = settings.client_cert_header
    limiter = container.device_limiter
    threads = container.device_threads

    def credentials(request: Request) -> tuple[str | None, str | None]:
        """(Mdm-Signature, proxy client certificate); the latter only when configured."""
        proxy = request.headers.get(header) if header else None
        return request.headers.get("mdm-signature"), proxy

    def _checkin(raw: bytes, creds: tuple[str | None, str | None]) -> bytes:
        auth = container.device_auth
        signer = auth.signer(creds[0], raw, creds[1])  # before parsing: unsigned bodies never reach the parser
        msg = parse_checkin(raw, max_bytes=settings.max_checkin_bytes, max_depth=settings.max_plist_depth)
        limiter.check(msg.udid)
        if isinstance(msg, Authenticate):
            fp = auth.for_authenticate(msg.udid, signer)
        else:
            fp = auth.for_enrolled(msg.udid, signer)
        out = container.checkin.handle(msg, fp)
        metrics.checkins.labels(msg.message_type, "ok").inc()
        return out

    def _connect(raw: bytes, creds: tuple[str | None, str | None]) -> bytes:
        auth = container.device_auth
        signer = auth.signer(creds[0], raw, creds[1])
        report = parse_report(raw, max_bytes=settings.max_connect_bytes, max_depth=settings.max_plist_depth)
        limiter.check(report.udid)
        device = auth.enrolled(report.udid, signer, allow_authenticated=False)
        out = container.connect.handle(report, device=device, signer=signer)
        metrics.reports.labels(report.status).inc()
        return out

    async def checkin(request: Request) -> Response:
        t0 = time.perf_counter()
        raw = await read_body(request, settings.max_checkin_bytes)
        try:
            out = await asyncio.get_running_loop().run_in_executor(threads, _checkin, raw, credentials(request))
        except MDMError as e:
            metrics.checkins.labels("unknown", e.code).inc()
            raise
        finally:
            metrics.latency.labels("checkin").observe(time.perf_counter() - t0)
        return Response(out, media_type=PLIST if out else None)

    async def connect(request: Request) -> Response:
        t0 = time.perf_counter()
        raw = await read_body(request, settings.max_connect_bytes)
        try:
            out = await asyncio.get_running_loop().run_in_executor(threads, _connect, raw, credentials(request))
        finally:
            metrics.latency.labels("connect").observe(time.perf_counter() - t0)
        return Response(out, media_type=PLIST if out else None)

    # plain Starlette routes: every device request comes here, and they need no FastAPI
    # dependency resolution (the error handler still turns MDMError into its reply)
    router.add_route("/mdm/checkin", checkin, methods=["PUT"], include_in_schema=False)
    router.add_route("/mdm/connect", connect, methods=["PUT"], include_in_schema=False)
    return router
