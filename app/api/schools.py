"""/api/v1/schools and their profiles."""

from __future__ import annotations

from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from app.api.deps import MOBILECONFIG, IntId, Principal, auth
from app.api.schemas import ProfilePush, SchoolCreate
from app.services.commands import Target
from app.services.enrollment import hash_secret, new_secret
from mdm.commands import InstallProfile
from mdm.errors import Forbidden, NotFound


def router(c) -> APIRouter:
    r = APIRouter()
    Auth = auth(c)

    def enroll_url(school_id: str, token: str) -> str:
        return f"{c.settings.public_url.rstrip('/')}/enroll/{school_id}?token={token}"

    @r.get("/schools", tags=["schools"])
    async def list_schools(me: Principal = Auth) -> dict:
        items = await run_in_threadpool(c.schools.list)
        if me.schools is not None:
            items = [s for s in items if s["id"] in me.schools]
        return {"items": items, "total": len(items)}

    @r.post("/schools", tags=["schools"], status_code=201)
    async def create_school(body: SchoolCreate, me: Principal = Auth) -> dict:
        me.require("admin")
        if me.schools is not None:
            raise Forbidden("a school-scoped token cannot create schools")
        token = new_secret()
        created = await run_in_threadpool(c.schools.upsert, body.id, body.name, hash_secret(token), c.clock())
        await run_in_threadpool(c.audit.record, me.name, "school:create" if created else "school:update", body.id,
                                {"name": body.name})
        return {"id": body.id, "name": body.name, "created": created, "enroll_token": token,
                "enroll_url": enroll_url(body.id, token)}

    @r.post("/schools/{school_id}/enroll-url", tags=["schools"])
    async def rotate_enroll_url(school_id: str, me: Principal = Auth) -> dict:
        """A fresh enrollment URL; the previous token stops working."""
        me.require("admin")
        me.require_school(school_id)
        school = await run_in_threadpool(c.schools.get, school_id)
        if school is None:
            raise NotFound(f"no school {school_id!r}")
        token = new_secret()
        await run_in_threadpool(c.schools.upsert, school_id, school["name"], hash_secret(token), c.clock())
        await run_in_threadpool(c.audit.record, me.name, "school:enroll-url", school_id, None)
        return {"enroll_url": enroll_url(school_id, token)}

    @r.get("/schools/{school_id}/profiles", tags=["profiles"])
    async def school_profiles(school_id: str, me: Principal = Auth) -> dict:
        me.require_school(school_id)
        items = await run_in_threadpool(c.profiles.list, school_id)
        return {"items": items, "total": len(items)}

    @r.get("/profiles/{profile_id}/download", tags=["profiles"], response_class=Response)
    async def download_profile(profile_id: IntId, me: Principal = Auth) -> Response:
        """The signed profile. One that carries secrets (Wi-Fi passwords, identities) needs a technician."""
        p = await run_in_threadpool(c.profiles.get, profile_id)
        if p["school_id"]:
            me.require_school(p["school_id"])
        if await run_in_threadpool(c.profiles.has_secrets, profile_id):
            me.require("technician")
        return Response(p["signed"], media_type=MOBILECONFIG, headers={
            "Content-Disposition": f'attachment; filename="{p["name"]}-v{p["version"]}.mobileconfig"'})

    @r.post("/profiles/{profile_id}/push", tags=["profiles"], status_code=202)
    async def push_profile(profile_id: IntId, body: ProfilePush, me: Principal = Auth) -> dict:
        """Queue InstallProfile as a job for the school's devices that lack this version."""
        me.require("technician")
        p = await run_in_threadpool(c.profiles.get, profile_id)
        if p["school_id"]:
            me.require_school(p["school_id"])
        target = Target(udids=tuple(body.devices or ()), school_id=None if body.devices else p["school_id"],
                        role=body.role or p["role"])
        target = await run_in_threadpool(lambda: c.profiles.push_target(profile_id, target,
                                                                        only_changed=body.only_changed))
        cmd = InstallProfile(params={"Payload": p["signed"]})
        encrypt = await run_in_threadpool(c.profiles.encrypts, profile_id)
        job = await run_in_threadpool(lambda: c.jobs.submit(cmd, target, actor=me.name, kind="profile",
                                                            profile_id=profile_id, encrypt=encrypt))
        return {"job": job, "command_uuid": cmd.command_uuid, "queued": job["total"], "profile": p["identifier"],
                "version": p["version"]}

    return r
