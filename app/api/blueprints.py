"""/api/v1/schools/{id}/blueprint: show, versions, diff, push (exactly what each device lacks)."""

from __future__ import annotations

from fastapi import APIRouter, Query
from pydantic import ConfigDict
from starlette.concurrency import run_in_threadpool

from app.api.deps import MAX_INT, Principal, auth
from app.api.schemas import ApiModel
from profiles.blueprint.models import ROLES


class BlueprintPushRequest(ApiModel):
    model_config = ConfigDict(extra="forbid")
    role: str | None = None
    devices: list[str] | None = None


def router(c) -> APIRouter:
    r = APIRouter(tags=["blueprints"])
    Auth = auth(c)

    @r.get("/schools/{school_id}/blueprint")
    async def show(school_id: str, me: Principal = Auth, version: int | None = Query(None, ge=1, le=MAX_INT)) -> dict:
        me.require_school(school_id)
        doc = await run_in_threadpool(c.blueprints.show, school_id, version)
        doc["versions"] = await run_in_threadpool(c.blueprints.versions, school_id)
        return doc

    @r.get("/schools/{school_id}/blueprint/diff")
    async def diff(school_id: str, me: Principal = Auth, old: int | None = Query(None, ge=1, le=MAX_INT),
                   new: int | None = Query(None, ge=1, le=MAX_INT)) -> dict:
        me.require_school(school_id)
        return await run_in_threadpool(c.blueprints.diff, school_id, old, new)

    @r.get("/schools/{school_id}/blueprint/plan")
    async def plan(school_id: str, me: Principal = Auth, role: str | None = None) -> dict:
        """What a push would queue now (nothing is queued)."""
        me.require_school(school_id)
        roles = (role,) if role else ROLES
        version, items = await run_in_threadpool(lambda: c.blueprint_push.plan(school_id, roles=roles))
        return {"version": version, "commands": [{"request_type": i.request_type, "devices": len(i.udids),
                                                  "item": i.item_key, "profile_id": i.profile_id} for i in items]}

    @r.post("/schools/{school_id}/blueprint/push", status_code=202)
    async def push(school_id: str, body: BlueprintPushRequest, me: Principal = Auth) -> dict:
        me.require("technician")
        me.require_school(school_id)
        if body.role is not None and body.role not in ROLES:
            from mdm.errors import ValidationFailed

            raise ValidationFailed(f"role must be one of {', '.join(ROLES)}")
        roles = (body.role,) if body.role else ROLES
        res = await run_in_threadpool(lambda: c.blueprint_push.push(school_id, actor=me.name, roles=roles,
                                                                    udids=body.devices))
        await run_in_threadpool(c.audit.record, me.name, "blueprint:push", f"school:{school_id}",
                                {"job": res["job_id"], "version": res["version"], "devices": res["devices"]})
        res["job"] = await run_in_threadpool(c.jobs.get, res["job_id"])
        return res

    return r
