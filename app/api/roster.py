"""/api/v1/roster: the imported roster's pupils and classes (the import itself is the local
``schoolmdm roster import``), and /api/v1/waves + /api/v1/rollout: deliveries and the city's progress."""

from __future__ import annotations

from fastapi import APIRouter, Query
from pydantic import ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from app.api.deps import MAX_INT, IntId, Principal, auth, scope
from app.api.schemas import ApiModel
from mdm.errors import NotFound


class WaveCreate(ApiModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(..., min_length=1, max_length=128, pattern=r"^[\w.@ :/+-]+$")
    csv: str = Field(..., min_length=1, description="serial[,school] per line; header 'serial,school' optional")
    school: str | None = Field(None, max_length=64, description="school of lines that name none")


class RolloutPlan(ApiModel):
    model_config = ConfigDict(extra="forbid")
    priority: int | None = Field(None, ge=1, le=100_000, description="1 = first; null clears")
    planned: int | None = Field(None, ge=0, le=1_000_000, description="iPads the school is to get; null clears")


def router(c) -> APIRouter:
    r = APIRouter()
    Auth = auth(c)

    @r.get("/roster/pupils", tags=["roster"])
    async def pupils(me: Principal = Auth, q: str | None = Query(None, max_length=128,
                                                                 description="name, person_number or sis_username"),
                     school: str | None = None, limit: int = Query(50, ge=1, le=500),
                     offset: int = Query(0, ge=0, le=MAX_INT)) -> dict:
        if school:
            me.require_school(school)
        return await run_in_threadpool(lambda: c.roster.pupils(q, school_id=school, schools=scope(me),
                                                               limit=limit, offset=offset))

    @r.get("/schools/{school_id}/classes", tags=["roster"])
    async def classes(school_id: str, me: Principal = Auth) -> dict:
        """The school's roster classes with teachers (leaders) and pupils (members), as Classroom gets them."""
        me.require_school(school_id)
        items = await run_in_threadpool(c.roster.classes, school_id)
        return {"items": items, "total": len(items)}

    @r.get("/waves", tags=["rollout"])
    async def list_waves(me: Principal = Auth) -> dict:
        return await run_in_threadpool(c.waves.list, scope(me))

    @r.post("/waves", tags=["rollout"], status_code=201)
    async def create_wave(body: WaveCreate, me: Principal = Auth) -> dict:
        """Record a delivery: serials to schools. All rows are checked first; nothing is stored if one is bad."""
        me.require("technician")
        if body.school:
            me.require_school(body.school)
        return await run_in_threadpool(lambda: c.waves.create(body.name, body.csv, actor=me.name,
                                                              default_school=body.school, schools=scope(me)))

    @r.get("/waves/{wave_id}", tags=["rollout"])
    async def show_wave(wave_id: IntId, me: Principal = Auth, limit: int = Query(1000, ge=1, le=50_000),
                        offset: int = Query(0, ge=0, le=MAX_INT)) -> dict:
        doc = await run_in_threadpool(lambda: c.waves.get(wave_id, schools=scope(me), limit=limit, offset=offset))
        if me.schools is not None and not doc["schools"]:
            raise NotFound(f"no wave {wave_id}")
        return doc

    @r.get("/rollout", tags=["rollout"])
    async def rollout(me: Principal = Auth) -> dict:
        """Progress per school and for the city; the schools next in line."""
        return await run_in_threadpool(c.waves.rollout, scope(me))

    @r.put("/rollout/schools/{school_id}", tags=["rollout"])
    async def plan(school_id: str, body: RolloutPlan, me: Principal = Auth) -> dict:
        """Set a school's rollout priority and planned number of iPads (only the fields sent)."""
        me.require("admin")
        me.require_school(school_id)
        changes = {k: getattr(body, k) for k in body.model_fields_set}
        return await run_in_threadpool(lambda: c.waves.set_plan(school_id, actor=me.name, **changes))

    return r
