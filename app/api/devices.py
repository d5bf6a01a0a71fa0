"""/api/v1/devices: find and inspect devices."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from app.api.deps import MAX_INT, Principal, auth, scope
from mdm.errors import NotFound


def router(c) -> APIRouter:
    r = APIRouter(tags=["devices"])
    Auth = auth(c)

    @r.get("/devices")
    async def list_devices(me: Principal = Auth, school: str | None = None,
                           state: Literal["pending", "authenticated", "enrolled", "unenrolled"] | None = None,
                           role: Literal["pupil", "teacher"] | None = None, os_version: str | None = None,
                           q: str | None = Query(None, max_length=128, description="serial, UDID or name"),
                           seen_before: dt.datetime | None = Query(None, description="last check-in before"),
                           seen_after: dt.datetime | None = Query(None, description="last check-in at or after"),
                           commands: Literal["pending", "failed"] | None = Query(
                               None, description="devices with pending or failed commands"),
                           sort: str = "udid", desc: bool = False,
                           limit: int = Query(50, ge=1, le=1000), offset: int = Query(0, ge=0, le=MAX_INT)) -> dict:
        if school:
            me.require_school(school)
        return await run_in_threadpool(
            c.devices.list, school_id=school, state=state, role=role, os_version=os_version, q=q, sort=sort,
            desc=desc, limit=limit, offset=offset, schools=scope(me), seen_before=seen_before,
            seen_after=seen_after, commands=commands)

    @r.get("/devices/{udid}")
    async def show_device(udid: str, me: Principal = Auth) -> dict:
        d = await run_in_threadpool(c.devices.get, udid)
        if me.schools is not None and d["school_id"] not in me.schools:
            raise NotFound(f"no device {udid!r}")
        return d

    return r
