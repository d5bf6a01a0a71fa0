"""Bulk jobs: one request to many devices, with live counts, cancel and retry."""

from __future__ import annotations

import datetime as dt
import json
import uuid

from sqlalchemy import and_, func, select, update

from app.db.models import Command, Device, Job, QueueItem
from app.services.clock import Clock, utcnow
from app.services.commands import CommandService, Target
from app.storage.sql_base import SQLStore
from mdm import plist
from mdm.commands import Command as MDMCommand, command_class
from mdm.errors import Conflict, NotFound

#: how queue statuses are counted on a job
BUCKET = {"queued": "queued", "sent": "sent", "acknowledged": "acknowledged", "error": "error",
          "format_error": "error", "not_now": "not_now", "cancelled": "cancelled", "expired": "expired"}
BUCKETS = ("queued", "sent", "acknowledged", "error", "not_now", "cancelled", "expired")
PENDING = ("queued", "sent", "not_now")
FAILED = ("error", "format_error", "expired")


def _iso(t):
    return t.isoformat() if t else None


class JobService(SQLStore):
    def __init__(self, sessions, commands: CommandService, *, clock: Clock = utcnow) -> None:
        super().__init__(sessions)
        self.commands = commands
        self.clock = clock

    def submit(self, command: MDMCommand, target: Target, *, actor: str, kind: str = "command",
               priority: int = 0, expires_at: dt.datetime | None = None, profile_id: int | None = None,
               encrypt: bool = False) -> dict:
        job = {"id": str(uuid.uuid4()), "kind": kind, "request_type": command.request_type,
               "target": target.describe()[:255], "school_id": target.school_id or self._school_of(target),
               "created_by": actor,
               "created_at": self.clock(), "expires_at": expires_at}
        self.commands.enqueue(command, target, actor=actor, priority=priority, expires_at=expires_at,
                              profile_id=profile_id, job=job, encrypt=encrypt)
        return self.get(job["id"])

    def _school_of(self, target: Target) -> str | None:
        """A device-list job belongs to a school when all its devices do (so school-scoped tokens see it)."""
        if not target.udids:
            return None
        with self.tx() as s:
            schools = set(s.execute(select(Device.school_id).where(Device.udid.in_(target.udids)).distinct()).scalars())
        return schools.pop() if len(schools) == 1 else None

    def _counts(self, s, job_id: str) -> dict:
        rows = s.execute(
            select(QueueItem.status, func.count()).join(Command, Command.uuid == QueueItem.command_uuid)
            .where(Command.job_id == job_id).group_by(QueueItem.status)).all()
        counts = dict.fromkeys(BUCKETS, 0)
        for status, n in rows:
            if status in BUCKET:  # "retried" rows are superseded by their retry
                counts[BUCKET[status]] += n
        return counts

    def _doc(self, j: Job, counts: dict) -> dict:
        pending = counts["queued"] + counts["sent"] + counts["not_now"]
        state = "cancelled" if j.cancelled_at else ("running" if pending else "finished")
        return {"id": j.id, "kind": j.kind, "request_type": j.request_type, "target": j.target,
                "school_id": j.school_id, "created_by": j.created_by, "created_at": _iso(j.created_at),
                "expires_at": _iso(j.expires_at), "cancelled_at": _iso(j.cancelled_at), "total": j.total,
                "counts": counts, "state": state,
                "progress": round((j.total - pending) / j.total, 4) if j.total else 1.0}

    def get(self, job_id: str) -> dict:
        with self.tx() as s:
            j = s.get(Job, job_id)
            if j is None:
                raise NotFound(f"no job {job_id!r}")
            return self._doc(j, self._counts(s, job_id))

    def list(self, *, school_id: str | None = None, schools: list[str] | None = None, limit: int = 50,
             offset: int = 0) -> dict:
        cond = []
        if school_id:
            cond.append(Job.school_id == school_id)
        if schools is not None:
            cond.append(Job.school_id.in_(schools))
        with self.tx() as s:
            total = s.execute(select(func.count()).select_from(Job).where(*cond)).scalar_one()
            jobs = s.execute(select(Job).where(*cond).order_by(Job.created_at.desc(), Job.id)
                             .limit(limit).offset(offset)).scalars().all()
            items = [self._doc(j, self._counts(s, j.id)) for j in jobs]
        return {"items": items, "total": total, "limit": limit, "offset": offset}

    def devices(self, job_id: str, *, status: str | None = None, limit: int = 100, offset: int = 0) -> dict:
        cond = [Command.job_id == job_id]
        if status:
            cond.append(QueueItem.status.in_([k for k, v in BUCKET.items() if v == status] or [status]))
        with self.tx() as s:
            if s.get(Job, job_id) is None:
                raise NotFound(f"no job {job_id!r}")
            base = (select(QueueItem, Device.serial, Device.device_name)
                    .join(Command, Command.uuid == QueueItem.command_uuid)
                    .join(Device, Device.udid == QueueItem.udid).where(*cond))
            total = s.execute(select(func.count()).select_from(base.subquery())).scalar_one()
            rows = s.execute(base.order_by(QueueItem.id).limit(limit).offset(offset)).all()
            items = [{"udid": q.udid, "serial": serial, "name": name, "command_uuid": q.command_uuid,
                      "status": q.status, "sent_at": _iso(q.sent_at), "completed_at": _iso(q.completed_at),
                      "error_chain": json.loads(q.error_chain) if q.error_chain else None}
                     for q, serial, name in rows]
        return {"items": items, "total": total, "limit": limit, "offset": offset}

    def cancel(self, job_id: str, actor: str) -> dict:
        now = self.clock()
        with self.tx() as s:
            j = s.get(Job, job_id, with_for_update=True)
            if j is None:
                raise NotFound(f"no job {job_id!r}")
            uuids = select(Command.uuid).where(Command.job_id == job_id).scalar_subquery()
            res = s.execute(update(QueueItem).where(and_(QueueItem.command_uuid.in_(uuids),
                                                         QueueItem.status.in_(("queued", "not_now"))))
                            .values(status="cancelled", completed_at=now))
            j.cancelled_at = j.cancelled_at or now
            cancelled = res.rowcount or 0
        doc = self.get(job_id)
        doc["cancelled_now"] = cancelled
        return doc

    def retry(self, job_id: str, actor: str) -> dict:
        """Queue the failed devices again (a fresh CommandUUID, same command) within the same job."""
        with self.tx() as s:
            j = s.get(Job, job_id)
            if j is None:
                raise NotFound(f"no job {job_id!r}")
            if j.cancelled_at:
                raise Conflict("a cancelled job cannot be retried")
            failed = s.execute(
                select(Command.uuid, Command.body, Command.profile_id, QueueItem.udid)
                .join(QueueItem, QueueItem.command_uuid == Command.uuid)
                .where(Command.job_id == job_id, QueueItem.status.in_(FAILED))).all()
        by_cmd: dict[str, tuple[bytes, int | None, list[str]]] = {}
        for cu, body, pid, udid in failed:
            by_cmd.setdefault(cu, (body, pid, []))[2].append(udid)
        retried = 0
        for cu, (body, pid, udids) in by_cmd.items():
            cmd_dict = plist.loads(body)["Command"]
            rt = cmd_dict.pop("RequestType")
            cmd = command_class(rt)(params=cmd_dict)
            res = self.commands.enqueue(cmd, Target(udids=tuple(udids)), actor=actor, job_id=job_id,
                                        profile_id=pid)
            requeued = select(QueueItem.udid).where(QueueItem.command_uuid == res.command_uuid).scalar_subquery()
            with self.tx() as s:  # the failed attempt is superseded: counted once, as the new one
                s.execute(update(QueueItem).where(QueueItem.command_uuid == cu, QueueItem.udid.in_(requeued),
                                                  QueueItem.status.in_(FAILED)).values(status="retried"))
            retried += res.count
        doc = self.get(job_id)
        doc["retried"] = retried
        return doc

    def finish_if_done(self, command_uuid: str) -> dict | None:
        """Mark the job of this command finished when nothing is pending; the job once, else None."""
        with self.tx() as s:
            job_id = s.execute(select(Command.job_id).where(Command.uuid == command_uuid)).scalar()
            if job_id is None:
                return None
            pending = (select(QueueItem.id).join(Command, Command.uuid == QueueItem.command_uuid)
                       .where(Command.job_id == job_id, QueueItem.status.in_(PENDING)).exists())
            res = s.execute(update(Job).where(Job.id == job_id, Job.finished_at.is_(None), Job.cancelled_at.is_(None),
                                              ~pending).values(finished_at=self.clock()))
            if not res.rowcount:
                return None
        return self.get(job_id)
