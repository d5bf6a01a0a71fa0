"""``GET /enroll/{school}?token=...``: the signed enrollment profile."""

from __future__ import annotations

from fastapi import APIRouter, Query, Response
from starlette.concurrency import run_in_threadpool

MOBILECONFIG = "application/x-apple-aspen-config"


def make_enroll_router(container) -> APIRouter:
    router = APIRouter(tags=["enrollment"])

    @router.get("/enroll/{school_id}", response_class=Response,
                responses={200: {"content": {MOBILECONFIG: {}}}, 403: {"description": "bad token"}})
    async def enroll(school_id: str, token: str | None = Query(None, max_length=256),
                     serial: str | None = Query(None, max_length=64)) -> Response:
        body = await run_in_threadpool(container.enrollment.profile, school_id, token, serial)
        return Response(body, media_type=MOBILECONFIG,
                        headers={"Content-Disposition": f'attachment; filename="enroll-{school_id}.mobileconfig"'})

    return router
