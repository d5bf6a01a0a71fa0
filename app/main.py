"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from prometheus_client import generate_latest
from sqlalchemy import text

from app.container import Container
from app.dashboard import STATIC_PATH, make_dashboard_router, static_files
from app.errors import install_error_handlers
from app.limits import install_limits
from app.routes.ade import make_ade_router
from app.routes.enroll import make_enroll_router
from app.routes.mdm import DeviceEndpoints
from app.routes.scep import make_scep_router
from app.settings import Settings, get_settings

log = logging.getLogger("schoolmdm")


def create_app(settings: Settings | None = None, *, container: Container | None = None,
               background: bool = True) -> FastAPI:
    settings = settings or get_settings()
    c = container or Container(settings)
    c.pki  # create or load keys before the first request

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        tasks = []
        if background and settings.background:
            from app.background import start_background

            tasks = await start_background(c)
        try:
            yield
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if c.__dict__.get("apns_client") is not None:
                await c.apns_client.aclose()

    app = FastAPI(title="schoolmdm", version="0.1.0", lifespan=lifespan,
                  description="Device management for a city's school iPads.")
    app.state.container = c
    install_error_handlers(app)
    app.add_middleware(DeviceEndpoints, container=c)  # added first: the limits below wrap it
    install_limits(app, settings)
    app.include_router(make_enroll_router(c))
    app.include_router(make_ade_router(c))
    app.include_router(make_scep_router(lambda: c.scep, max_body=settings.max_scep_bytes))

    from app.api.router import make_api_router

    app.include_router(make_api_router(c), prefix="/api/v1")
    app.include_router(make_dashboard_router(c))
    app.mount(STATIC_PATH, static_files(), name="static")

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    def readyz():
        try:
            with c.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as e:  # any database failure means not ready
            from fastapi.responses import JSONResponse

            return JSONResponse({"status": "not ready", "reason": type(e).__name__}, status_code=503)
        return {"status": "ready"}

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(c.metrics.registry).decode(),
                                 media_type="text/plain; version=0.0.4")

    return app
