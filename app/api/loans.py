"""/api/v1/loans: lend an iPad to a pupil, take it back (optionally erasing it), find loans.

The support desk may lend and take back; erasing on return needs the technician role.
"""

from __future__ import annotations

from fastapi import APIRouter, Query
from pydantic import ConfigDict, Field, model_validator
from starlette.concurrency import run_in_threadpool

from app.api.deps import MAX_INT, IntId, Principal, auth, scope
from app.api.schemas import ApiModel
from mdm.errors import NotFound


class LoanCreate(ApiModel):
    model_config = ConfigDict(extra="forbid")
    serial: str | None = Field(None, max_length=64)
    udid: str | None = Field(None, max_length=64)
    pupil: str = Field(..., min_length=1, max_length=128, description="person_id, sis_username or person_number")

    @model_validator(mode="after")
    def _one_device(self):
        if bool(self.serial) == bool(self.udid):
            raise ValueError("name the iPad by serial or by udid (one of them)")
        return self


class LoanReturn(ApiModel):
    model_config = ConfigDict(extra="forbid")
    erase: bool = False
    note: str | None = Field(None, max_length=500)


def router(c) -> APIRouter:
    r = APIRouter(tags=["loans"])
    Auth = auth(c)

    async def visible(loan_id: int, me: Principal) -> dict:
        loan = await run_in_threadpool(c.loans.get, loan_id)
        if me.schools is not None and loan["school_id"] not in me.schools:
            raise NotFound(f"no loan {loan_id}")
        return loan

    @r.post("/loans", status_code=201)
    async def lend(body: LoanCreate, me: Principal = Auth) -> dict:
        device = body.serial or body.udid
        if me.schools is not None:
            school = await run_in_threadpool(c.loans.device_school, device)
            me.require_school(school or await run_in_threadpool(c.loans.pupil_school, body.pupil))
        return await run_in_threadpool(lambda: c.loans.lend(device=device, pupil=body.pupil, actor=me.name))

    @r.post("/loans/{loan_id}/return")
    async def give_back(loan_id: IntId, body: LoanReturn, me: Principal = Auth) -> dict:
        """Record the return; ``erase`` queues EraseDevice (technician), after which the iPad re-enrolls via ADE."""
        if body.erase:
            me.require("technician")
        await visible(loan_id, me)
        return await run_in_threadpool(lambda: c.loans.return_(loan_id, actor=me.name, erase=body.erase,
                                                               note=body.note))

    @r.get("/loans")
    async def list_loans(me: Principal = Auth,
                         pupil: str | None = Query(None, max_length=128, description="name, number or user name"),
                         device: str | None = Query(None, max_length=64, description="serial or UDID"),
                         q: str | None = Query(None, max_length=128, description="pupil or device"),
                         active: bool | None = None, school: str | None = None,
                         limit: int = Query(50, ge=1, le=1000), offset: int = Query(0, ge=0, le=MAX_INT)) -> dict:
        if school:
            me.require_school(school)
        return await run_in_threadpool(lambda: c.loans.list(pupil=pupil, device=device, q=q, active=active,
                                                            school_id=school, schools=scope(me),
                                                            limit=limit, offset=offset))

    @r.get("/loans/{loan_id}")
    async def show_loan(loan_id: IntId, me: Principal = Auth) -> dict:
        return await visible(loan_id, me)

    return r
