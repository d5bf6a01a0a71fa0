"""``POST /enroll/ade/{school}``: the ADE profile's URL; a device's signed MachineInfo in, the
signed enrollment profile out."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from app.routes.body import read_body
from app.routes.enroll import MOBILECONFIG
from mdm.ade.machineinfo import MAX_BYTES


def make_ade_router(container) -> APIRouter:
    router = APIRouter(tags=["enrollment"])

    @router.post("/enroll/ade/{school_id}", response_class=Response,
                 responses={200: {"content": {MOBILECONFIG: {}}},
                            403: {"description": "not an ADE device of this school (reason in the body)"}})
    async def enroll_ade(school_id: str, request: Request) -> Response:
        raw = await read_body(request, MAX_BYTES)
        body = await run_in_threadpool(container.ade_enrollment.profile, school_id, raw)
        return Response(body, media_type=MOBILECONFIG)

    return router
