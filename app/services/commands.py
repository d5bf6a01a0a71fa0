"""Queue commands for a target (devices, a school, a role within a school, everyone) and push."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from sqlalchemy import select

from app.db.models import Device
from app.services.clock import Clock, utcnow
from app.storage.interfaces import CommandQueue, PushQueue
from app.storage.sql_base import SQLStore
from mdm.commands import Command, new_command
from mdm.errors import NotFound, ValidationFailed

log = logging.getLogger("schoolmdm.commands")


@dataclass(frozen=True)
class Target:
    udids: tuple[str, ...] = ()
    school_id: str | None = None
    role: str | None = None
    everyone: bool = False

    def describe(self) -> str:
        if self.udids:
            return f"devices:{','.join(self.udids[:5])}{'…' if len(self.udids) > 5 else ''}"
        if self.school_id:
            return f"school:{self.school_id}" + (f"/{self.role}" if self.role else "")
        return "all"


@dataclass
class Enqueued:
    command_uuid: str
    request_type: str
    count: int
    udids: list[str] = field(repr=False, default_factory=list)


class TargetResolver(SQLStore):
    """Which enrolled devices a target names."""

    def resolve(self, t: Target) -> list[str]:
        q = select(Device.udid).where(Device.enrollment_state == "enrolled")
        if t.udids:
            with self.tx() as s:
                found = set(s.execute(select(Device.udid).where(Device.udid.in_(t.udids))).scalars())
                missing = [u for u in t.udids if u not in found]
                if missing:
                    raise NotFound(f"unknown device(s): {', '.join(missing[:10])}", details={"unknown": missing})
                return list(s.execute(q.where(Device.udid.in_(t.udids)).order_by(Device.udid)).scalars())
        if t.school_id:
            q = q.where(Device.school_id == t.school_id)
            if t.role:
                q = q.where(Device.role == t.role)
        elif not t.everyone:
            raise ValidationFailed("a target needs devices, a school or everyone")
        with self.tx() as s:
            return list(s.execute(q.order_by(Device.udid)).scalars())


class CommandService:
    def __init__(self, queue: CommandQueue, pushes: PushQueue, resolver: TargetResolver, *,
                 clock: Clock = utcnow) -> None:
        self.queue = queue
        self.pushes = pushes
        self.resolver = resolver
        self.clock = clock

    def enqueue(self, command: Command, target: Target, *, actor: str | None = None, priority: int = 0,
                job_id: str | None = None, expires_at: dt.datetime | None = None,
                profile_id: int | None = None, push: bool = True, job: dict | None = None,
                udids: list[str] | None = None, encrypt: bool = False) -> Enqueued:
        """Queue ``command`` for the target's enrolled devices (and record ``job`` with it).

        ``udids``, when given, are the already-resolved devices of ``target``.
        """
        if udids is None:
            udids = self.resolver.resolve(target)
        now = self.clock()
        body = command.to_plist()
        if job is not None:
            job_id = job["id"]
        if udids or job is not None:
            self.queue.enqueue(command_uuid=command.command_uuid, request_type=command.request_type, body=body,
                               udids=udids, now=now, priority=priority, job_id=job_id, created_by=actor,
                               expires_at=expires_at, profile_id=profile_id, job=job, encrypt=encrypt)
            if push:
                self.pushes.request(udids, now)
        log.info("queued %s %s for %d device(s) (%s) by %s", command.request_type, command.command_uuid,
                 len(udids), target.describe(), actor)
        return Enqueued(command.command_uuid, command.request_type, len(udids), udids)

    def enqueue_request(self, request_type: str, params: dict | None, target: Target, **kw) -> Enqueued:
        return self.enqueue(new_command(request_type, params), target, **kw)
