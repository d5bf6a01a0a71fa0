"""/api/v1/tokens and /api/v1/audit (admin only)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from fastapi import APIRouter, Query
from pydantic import ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from app.api.deps import MAX_INT, Principal, auth
from app.api.schemas import ApiModel


class TokenCreate(ApiModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(..., min_length=1, max_length=128, pattern=r"^[\w.@ -]+$")
    role: Literal["admin", "technician", "support"]
    schools: list[str] | None = None


class WebhookCreate(ApiModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(..., min_length=1, max_length=128, pattern=r"^[\w.@ -]+$")
    url: str = Field(..., max_length=1024, pattern=r"^https?://[^\s]+$")
    events: list[Literal["*", "device.enrolled", "device.checked_out", "command.completed", "job.completed"]] = \
        Field(..., min_length=1)


def router(c) -> APIRouter:
    r = APIRouter()
    Auth = auth(c)

    @r.get("/tokens", tags=["admin"])
    async def list_tokens(me: Principal = Auth) -> dict:
        me.require("admin")
        items = await run_in_threadpool(c.tokens.list)
        return {"items": items, "total": len(items)}

    @r.post("/tokens", tags=["admin"], status_code=201)
    async def create_token(body: TokenCreate, me: Principal = Auth) -> dict:
        """Create a named token; the token is shown once, only its hash is stored."""
        me.require("admin")
        token = await run_in_threadpool(c.tokens.create, body.name, body.role, body.schools, c.clock())
        await run_in_threadpool(c.audit.record, me.name, "token:create", body.name,
                                {"role": body.role, "schools": body.schools})
        return {"name": body.name, "role": body.role, "schools": body.schools, "token": token}

    @r.delete("/tokens/{name}", tags=["admin"])
    async def revoke_token(name: str, me: Principal = Auth) -> dict:
        me.require("admin")
        await run_in_threadpool(c.tokens.revoke, name, c.clock())
        await run_in_threadpool(c.audit.record, me.name, "token:revoke", name, None)
        return {"name": name, "revoked": True}

    @r.get("/webhooks", tags=["admin"])
    async def list_webhooks(me: Principal = Auth) -> dict:
        me.require("admin")
        items = await run_in_threadpool(c.webhooks.list)
        return {"items": items, "total": len(items)}

    @r.post("/webhooks", tags=["admin"], status_code=201)
    async def create_webhook(body: WebhookCreate, me: Principal = Auth) -> dict:
        """Subscribe a URL to events; the HMAC secret is shown once."""
        me.require("admin")
        out = await run_in_threadpool(c.webhooks.create, body.name, body.url, list(body.events), c.clock())
        await run_in_threadpool(c.audit.record, me.name, "webhook:create", body.name,
                                {"url": body.url, "events": body.events})
        return out

    @r.delete("/webhooks/{name}", tags=["admin"])
    async def delete_webhook(name: str, me: Principal = Auth) -> dict:
        me.require("admin")
        await run_in_threadpool(c.webhooks.delete, name)
        await run_in_threadpool(c.audit.record, me.name, "webhook:delete", name, None)
        return {"name": name, "deleted": True}

    @r.get("/webhooks/deliveries", tags=["admin"])
    async def webhook_deliveries(me: Principal = Auth, limit: int = Query(100, ge=1, le=1000)) -> dict:
        me.require("admin")
        items = await run_in_threadpool(c.webhooks.deliveries, limit)
        return {"items": items, "total": len(items)}

    @r.get("/audit", tags=["admin"])
    async def audit(me: Principal = Auth, actor: str | None = None, action: str | None = None,
                    target: str | None = None, since: dt.datetime | None = None, until: dt.datetime | None = None,
                    limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0, le=MAX_INT)) -> dict:
        me.require("admin")
        return await run_in_threadpool(lambda: c.audit.list(actor=actor, action=action, target=target, since=since,
                                                            until=until, limit=limit, offset=offset))

    return r
