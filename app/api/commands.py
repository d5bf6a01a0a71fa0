"""/api/v1/commands and /api/v1/jobs: queue commands as jobs, follow, cancel, retry."""

from __future__ import annotations

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from app.api.auth import require_queue
from app.api.deps import MAX_INT, Principal, auth, scope
from app.api.schemas import CommandRequest
from app.services.commands import Target
from mdm.commands import new_command
from mdm.errors import Forbidden, NotFound


def _check_devices_in_scope(c, udids: list[str], me: Principal) -> None:
    for u in udids:
        d = c.devices.get(u, history=0)
        if d["school_id"] not in (me.schools or ()):
            raise Forbidden(f"device {u} is outside this token's schools")


def router(c) -> APIRouter:
    r = APIRouter()
    Auth = auth(c)

    async def visible_job(job_id: str, me: Principal) -> dict:
        job = await run_in_threadpool(c.jobs.get, job_id)
        if me.schools is not None and job["school_id"] not in me.schools:
            raise NotFound(f"no job {job_id!r}")
        return job

    @r.post("/commands", tags=["commands"], status_code=202)
    async def queue_command(body: CommandRequest, me: Principal = Auth) -> dict:
        """Queue one command for a device list, a school, a role within a school, or every device: a job."""
        require_queue(me, body.request_type)
        if body.school:
            me.require_school(body.school)
        elif me.schools is not None and body.all_devices:
            raise Forbidden("a school-scoped token cannot target every device")
        if me.schools is not None and body.devices:
            await run_in_threadpool(_check_devices_in_scope, c, body.devices, me)
        target = Target(udids=tuple(body.devices or ()), school_id=body.school, role=body.role,
                        everyone=body.all_devices)
        cmd = new_command(body.request_type, body.params)
        job = await run_in_threadpool(lambda: c.jobs.submit(cmd, target, actor=me.name, priority=body.priority,
                                                            expires_at=body.expires_at))
        return {"job": job, "command_uuid": cmd.command_uuid, "request_type": cmd.request_type,
                "queued": job["total"]}

    @r.get("/commands/{command_uuid}", tags=["commands"])
    async def command_status(command_uuid: str, me: Principal = Auth) -> dict:
        return await run_in_threadpool(c.devices.command_status, command_uuid)

    @r.get("/jobs", tags=["jobs"])
    async def list_jobs(me: Principal = Auth, school: str | None = None,
                        limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0, le=MAX_INT)) -> dict:
        if school:
            me.require_school(school)
        return await run_in_threadpool(lambda: c.jobs.list(school_id=school, schools=scope(me), limit=limit,
                                                           offset=offset))

    @r.get("/jobs/{job_id}", tags=["jobs"])
    async def show_job(job_id: str, me: Principal = Auth) -> dict:
        return await visible_job(job_id, me)

    @r.get("/jobs/{job_id}/devices", tags=["jobs"])
    async def job_devices(job_id: str, me: Principal = Auth, status: str | None = None,
                          limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0, le=MAX_INT)) -> dict:
        await visible_job(job_id, me)
        return await run_in_threadpool(lambda: c.jobs.devices(job_id, status=status, limit=limit, offset=offset))

    @r.post("/jobs/{job_id}/cancel", tags=["jobs"])
    async def cancel_job(job_id: str, me: Principal = Auth) -> dict:
        me.require("technician")
        await visible_job(job_id, me)
        return await run_in_threadpool(c.jobs.cancel, job_id, me.name)

    @r.post("/jobs/{job_id}/retry", tags=["jobs"])
    async def retry_job(job_id: str, me: Principal = Auth) -> dict:
        me.require("technician")
        await visible_job(job_id, me)
        return await run_in_threadpool(c.jobs.retry, job_id, me.name)

    return r
