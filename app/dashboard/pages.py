"""The dashboard's pages: city overview, school, device, job, search (all GET, all scoped)."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from app.api.auth import Principal, make_principal_dependency
from app.api.deps import scope
from app.dashboard import policy
from app.dashboard.queries import STATES, DashboardQueries
from app.dashboard.render import page_links, redirect, render
from app.dashboard.session import Csrf
from app.services.devices import SORTABLE
from app.services.jobs import BUCKETS
from mdm.errors import NotFound

DEVICE_SORTS = ("serial", "name", "os", "last_seen", "udid")
PAGE = 50
JOB_PAGE = 100
FAILURE_DAYS = 7


def visible_job(c, job_id: str, me: Principal) -> dict:
    """A job, if this principal may see it (same rule as GET /api/v1/jobs/{id})."""
    job = c.jobs.get(job_id)
    if me.schools is not None and job["school_id"] not in me.schools:
        raise NotFound(f"no job {job_id!r}")
    return job


def visible_device(c, udid: str, me: Principal, *, history: int = 50) -> dict:
    """A device by UDID or serial, if in this principal's schools (else 404, like the API)."""
    d = c.devices.get(udid, history=history)
    if me.schools is not None and d["school_id"] not in me.schools:
        raise NotFound(f"no device {udid!r}")
    return d


def pages_router(c, csrf: Csrf, q: DashboardQueries, route: type[APIRoute]) -> APIRouter:
    r = APIRouter(route_class=route, include_in_schema=False)
    Me = Depends(make_principal_dependency(c))
    org = c.settings.org_name

    def page(request: Request, me: Principal, name: str, **ctx):
        return render(name, me=me, csrf=csrf.token(request), org=org, **ctx)

    @r.get("/")
    def overview(request: Request, me: Principal = Me):
        schools = scope(me)
        return page(request, me, "overview.html", states=STATES, city=q.school_overview(schools),
                    running=q.running_jobs(schools), failures=q.recent_failures(schools, days=FAILURE_DAYS),
                    buckets=BUCKETS)

    @r.get("/schools/{school_id}")
    def school(request: Request, school_id: str, me: Principal = Me, sort: str = "serial", desc: bool = False,
               state: str | None = None, offset: int = Query(0, ge=0, le=1_000_000)):
        me.require_school(school_id)
        info = c.schools.get(school_id)
        if info is None:
            raise NotFound(f"no school {school_id!r}")
        sort = sort if sort in DEVICE_SORTS and sort in SORTABLE else "serial"
        state = state if state in STATES else None
        devices = c.devices.list(school_id=school_id, state=state, sort=sort, desc=desc, limit=PAGE, offset=offset)
        path = f"/schools/{school_id}"
        params = {"sort": sort, "desc": "true" if desc else None, "state": state}
        return page(request, me, "school.html", school=info, devices=devices, sort=sort, desc=desc, state=state,
                    states=STATES, sorts=DEVICE_SORTS, rollout=q.school_rollout(school_id),
                    profiles=q.profile_versions(school_id),
                    pager=page_links(path, params, devices["total"], PAGE, offset))

    @r.get("/devices/{udid}")
    def device(request: Request, udid: str, me: Principal = Me):
        d = visible_device(c, udid, me)
        jobs = q.command_jobs([cmd["command_uuid"] for cmd in d["commands"]])
        school = c.schools.get(d["school_id"]) if d["school_id"] else None
        actions = policy.offered(me) if d["enrollment_state"] == "enrolled" else []
        return page(request, me, "device.html", d=d, jobs=jobs, school=school, actions=actions,
                    all_actions=policy.ACTIONS, message_max=policy.MAX_MESSAGE, phone_max=policy.MAX_PHONE)

    @r.get("/jobs/{job_id}")
    def job(request: Request, job_id: str, me: Principal = Me, status: str | None = None,
            offset: int = Query(0, ge=0, le=1_000_000)):
        j = visible_job(c, job_id, me)
        status = status if status in BUCKETS else None
        devices = c.jobs.devices(job_id, status=status, limit=JOB_PAGE, offset=offset)
        path = f"/jobs/{job_id}"
        return page(request, me, "job.html", job=j, devices=devices, status=status, buckets=BUCKETS,
                    offset=offset, limit=JOB_PAGE, may_manage=me.at_least("technician"),
                    pager=page_links(path, {"status": status}, devices["total"], JOB_PAGE, offset))

    @r.get("/search")
    async def search(request: Request, me: Principal = Me, q_: str = Query("", alias="q", max_length=128),
                     offset: int = Query(0, ge=0, le=1_000_000)):
        text = q_.strip()
        if text and not offset:
            exact = await run_in_threadpool(q.exact_devices, text, scope(me))
            if len(exact) == 1:
                return redirect(f"/devices/{quote(exact[0], safe='')}")
        results = None
        if text:
            results = await run_in_threadpool(lambda: c.devices.list(q=text, schools=scope(me), sort="serial",
                                                                     limit=PAGE, offset=offset))
        pager = page_links("/search", {"q": text}, results["total"], PAGE, offset) if results else None
        return render("search.html", me=me, csrf=csrf.token(request), org=org, q=text, results=results,
                      pager=pager)

    return r
