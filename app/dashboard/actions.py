"""The dashboard's POST forms: a command to one device, cancel and retry a job.

Each form carries the session's CSRF token and goes through the same services and role
checks as the JSON API (``c.jobs`` is the audited job service), then redirects (303).
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.routing import APIRoute

from app.api.auth import Principal, make_principal_dependency
from app.dashboard import policy
from app.dashboard.pages import visible_device, visible_job
from app.dashboard.render import redirect
from app.dashboard.session import Csrf
from app.services.commands import Target
from mdm.commands import new_command
from mdm.errors import Conflict

FIELD = 1000  # no form field needs more characters


def actions_router(c, csrf: Csrf, route: type[APIRoute]) -> APIRouter:
    r = APIRouter(route_class=route, include_in_schema=False)
    Me = Depends(make_principal_dependency(c))

    @r.post("/devices/{udid}/commands")
    def queue_command(request: Request, udid: str, me: Principal = Me,
                      csrf_token: str = Form("", alias="csrf", max_length=FIELD),
                      request_type: str = Form("", max_length=64), message: str = Form("", max_length=FIELD),
                      phone: str = Form("", max_length=FIELD), identifier: str = Form("", max_length=FIELD),
                      confirm: str = Form("", max_length=FIELD)):
        csrf.check(request, csrf_token)
        d = visible_device(c, udid, me, history=0)
        policy.authorize_device_command(me, request_type, d)
        if d["enrollment_state"] != "enrolled":
            raise Conflict(f"device {d['serial'] or d['udid']} is {d['enrollment_state']}, not enrolled: "
                           "commands cannot reach it")
        params = policy.action_params(request_type, {"message": message, "phone": phone,
                                                     "identifier": identifier, "confirm": confirm}, d)
        cmd = new_command(request_type, params)
        # the job records the device's school, so school-scoped tokens can follow it
        job = c.jobs.submit(cmd, Target(udids=(d["udid"],), school_id=d["school_id"]), actor=me.name)
        return redirect(f"/jobs/{quote(job['id'], safe='')}")

    @r.post("/jobs/{job_id}/cancel")
    def cancel_job(request: Request, job_id: str, me: Principal = Me,
                   csrf_token: str = Form("", alias="csrf", max_length=FIELD)):
        csrf.check(request, csrf_token)
        me.require("technician")
        visible_job(c, job_id, me)
        c.jobs.cancel(job_id, me.name)
        return redirect(f"/jobs/{quote(job_id, safe='')}")

    @r.post("/jobs/{job_id}/retry")
    def retry_job(request: Request, job_id: str, me: Principal = Me,
                  csrf_token: str = Form("", alias="csrf", max_length=FIELD)):
        csrf.check(request, csrf_token)
        me.require("technician")
        visible_job(c, job_id, me)
        c.jobs.retry(job_id, me.name)
        return redirect(f"/jobs/{quote(job_id, safe='')}")

    return r
