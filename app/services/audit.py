"""The audit log (who, what, when, target) and the wrappers that write it.

Behaviour is added by wrapping a service: ``AuditedJobs`` records every bulk
job, cancel and retry; ``AuditLog.record`` is called by the admin routes.
"""

from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import func, insert, select

from app.db.models import AuditEntry
from app.services.clock import Clock, utcnow
from app.storage.sql_base import SQLStore


class AuditLog(SQLStore):
    def __init__(self, sessions, *, clock: Clock = utcnow) -> None:
        super().__init__(sessions)
        self.clock = clock

    def record(self, actor: str, action: str, target: str | None, details: dict | None = None) -> None:
        with self.tx() as s:
            s.execute(insert(AuditEntry).values(at=self.clock(), actor=actor, action=action,
                                                target=(target or "")[:255] or None,
                                                details=json.dumps(details, default=str) if details else None))

    def list(self, *, actor: str | None = None, action: str | None = None, target: str | None = None,
             since: dt.datetime | None = None, until: dt.datetime | None = None,
             limit: int = 100, offset: int = 0) -> dict:
        cond = []
        if actor:
            cond.append(AuditEntry.actor == actor)
        if action:
            cond.append(AuditEntry.action == action)
        if target:
            cond.append(AuditEntry.target.like(f"%{target}%"))
        if since:
            cond.append(AuditEntry.at >= since)
        if until:
            cond.append(AuditEntry.at < until)
        with self.tx() as s:
            total = s.execute(select(func.count()).select_from(AuditEntry).where(*cond)).scalar_one()
            rows = s.execute(select(AuditEntry).where(*cond).order_by(AuditEntry.id.desc())
                             .limit(limit).offset(offset)).scalars()
            items = [{"id": r.id, "at": r.at.isoformat(), "actor": r.actor, "action": r.action,
                      "target": r.target, "details": json.loads(r.details) if r.details else None} for r in rows]
        return {"items": items, "total": total, "limit": limit, "offset": offset}


class AuditedJobs:
    """JobService with every submit, cancel and retry written to the audit log."""

    def __init__(self, inner, audit: AuditLog) -> None:
        self.inner = inner
        self.audit = audit

    def __getattr__(self, name):  # read-only methods pass through
        return getattr(self.inner, name)

    def submit(self, command, target, *, actor: str, **kw) -> dict:
        job = self.inner.submit(command, target, actor=actor, **kw)
        self.audit.record(actor, f"queue:{command.request_type}", target.describe(),
                          {"job": job["id"], "devices": job["total"], "command_uuid": command.command_uuid})
        return job

    def cancel(self, job_id: str, actor: str) -> dict:
        doc = self.inner.cancel(job_id, actor)
        self.audit.record(actor, "job:cancel", job_id, {"cancelled": doc.get("cancelled_now")})
        return doc

    def retry(self, job_id: str, actor: str) -> dict:
        doc = self.inner.retry(job_id, actor)
        self.audit.record(actor, "job:retry", job_id, {"retried": doc.get("retried")})
        return doc
