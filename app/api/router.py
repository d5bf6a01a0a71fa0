"""JSON API v1: devices, commands, schools, profiles. Routes parse, call a service, return JSON."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query, Response
from starlette.concurrency import run_in_threadpool

from app.api.auth import Principal, make_principal_dependency
from app.api.schemas import CommandRequest, ProfilePush, SchoolCreate
from app.services.commands import Target
from app.services.enrollment import hash_secret, new_secret
from mdm.commands import command_class, new_command
from mdm.errors import Forbidden, NotFound

MOBILECONFIG = "application/x-apple-aspen-config"


def make_api_router(c) -> APIRouter:
    r = APIRouter()
    principal = make_principal_dependency(c)
    Auth = Depends(principal)

    @r.get("/devices", tags=["devices"])
    async def list_devices(me: Principal = Auth, school: str | None = None,
                           state: Literal["pending", "authenticated", "enrolled", "unenrolled"] | None = None,
                           role: Literal["pupil", "teacher"] | None = None, os_version: str | None = None,
                           q: str | None = Query(None, max_length=128, description="serial, UDID or name"),
                           sort: str = "udid", desc: bool = False,
                           limit: int = Query(50, ge=1, le=1000), offset: int = Query(0, ge=0)) -> dict:
        if school:
            me.require_school(school)
        return await run_in_threadpool(
            c.devices.list, school_id=school, state=state, role=role, os_version=os_version, q=q, sort=sort,
            desc=desc, limit=limit, offset=offset, schools=list(me.schools) if me.schools is not None else None)

    @r.get("/devices/{udid}", tags=["devices"])
    async def show_device(udid: str, me: Principal = Auth) -> dict:
        d = await run_in_threadpool(c.devices.get, udid)
        if me.schools is not None and d["school_id"] not in me.schools:
            raise NotFound(f"no device {udid!r}")
        return d

    @r.post("/commands", tags=["commands"], status_code=202)
    async def queue_command(body: CommandRequest, me: Principal = Auth) -> dict:
        cls = command_class(body.request_type)
        if not me.at_least("technician") and not cls.safe:
            raise Forbidden(f"the support role may not queue {body.request_type}")
        if body.school:
            me.require_school(body.school)
        elif me.schools is not None:
            if body.all_devices:
                raise Forbidden("a school-scoped token cannot target every device")
        target = Target(udids=tuple(body.devices or ()), school_id=body.school, role=body.role,
                        everyone=body.all_devices)
        if me.schools is not None and body.devices:
            await run_in_threadpool(_check_devices_in_scope, c, body.devices, me)
        cmd = new_command(body.request_type, body.params)
        res = await run_in_threadpool(lambda: c.commands.enqueue(cmd, target, actor=me.name, priority=body.priority,
                                                                 expires_at=body.expires_at))
        return {"command_uuid": res.command_uuid, "request_type": res.request_type, "queued": res.count}

    @r.get("/commands/{command_uuid}", tags=["commands"])
    async def command_status(command_uuid: str, me: Principal = Auth) -> dict:
        return await run_in_threadpool(c.devices.command_status, command_uuid)

    @r.get("/schools", tags=["schools"])
    async def list_schools(me: Principal = Auth) -> dict:
        items = await run_in_threadpool(c.schools.list)
        if me.schools is not None:
            items = [s for s in items if s["id"] in me.schools]
        return {"items": items, "total": len(items)}

    @r.post("/schools", tags=["schools"], status_code=201)
    async def create_school(body: SchoolCreate, me: Principal = Auth) -> dict:
        me.require("admin")
        token = new_secret()
        created = await run_in_threadpool(c.schools.upsert, body.id, body.name, hash_secret(token), c.clock())
        return {"id": body.id, "name": body.name, "created": created, "enroll_token": token,
                "enroll_url": f"{c.settings.public_url.rstrip('/')}/enroll/{body.id}?token={token}"}

    @r.post("/schools/{school_id}/enroll-url", tags=["schools"])
    async def rotate_enroll_url(school_id: str, me: Principal = Auth) -> dict:
        me.require("admin")
        school = await run_in_threadpool(c.schools.get, school_id)
        if school is None:
            raise NotFound(f"no school {school_id!r}")
        token = new_secret()
        await run_in_threadpool(c.schools.upsert, school_id, school["name"], hash_secret(token), c.clock())
        return {"enroll_url": f"{c.settings.public_url.rstrip('/')}/enroll/{school_id}?token={token}"}

    @r.get("/schools/{school_id}/profiles", tags=["profiles"])
    async def school_profiles(school_id: str, me: Principal = Auth) -> dict:
        me.require_school(school_id)
        items = await run_in_threadpool(c.profiles.list, school_id)
        return {"items": items, "total": len(items)}

    @r.get("/profiles/{profile_id}/download", tags=["profiles"], response_class=Response)
    async def download_profile(profile_id: int, me: Principal = Auth) -> Response:
        p = await run_in_threadpool(c.profiles.get, profile_id)
        me.require_school(p["school_id"]) if p["school_id"] else None
        return Response(p["signed"], media_type=MOBILECONFIG,
                        headers={"Content-Disposition": f'attachment; filename="{p["name"]}-v{p["version"]}.mobileconfig"'})

    @r.post("/profiles/{profile_id}/push", tags=["profiles"], status_code=202)
    async def push_profile(profile_id: int, body: ProfilePush, me: Principal = Auth) -> dict:
        me.require("technician")
        p = await run_in_threadpool(c.profiles.get, profile_id)
        if p["school_id"]:
            me.require_school(p["school_id"])
        target = Target(udids=tuple(body.devices or ()), school_id=None if body.devices else p["school_id"],
                        role=body.role or p["role"])
        res = await run_in_threadpool(lambda: c.profiles.push(profile_id, target, actor=me.name,
                                                              only_changed=body.only_changed))
        return {"command_uuid": res.command_uuid, "queued": res.count, "profile": p["identifier"],
                "version": p["version"]}

    return r


def _check_devices_in_scope(c, udids: list[str], me: Principal) -> None:
    for u in udids:
        d = c.devices.get(u, history=0)
        if d["school_id"] not in (me.schools or ()):
            raise Forbidden(f"device {u} is outside this token's schools")
