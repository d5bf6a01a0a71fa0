"""Queue commands for a target (devices, a school, a role within a school, everyone) and push."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from sqlalchemy import select

from app.db.models import Device
from app.services.clock import Clock, utcnow
from app.storage.interfaces import CommandQueue, DeviceSelection, PushQueue
from app.storage.sql_base import SQLStore
from app.storage.sql_selection import UDID_CHUNK, selected_udids
from mdm.commands import Command, new_command
from mdm.errors import NotFound, ValidationFailed

log = logging.getLogger("schoolmdm.commands")


@dataclass(frozen=True)
class Target:
    udids: tuple[str, ...] = ()
    school_id: str | None = None
    role: str | None = None
    everyone: bool = False
    #: (profile identifier, content hash): leave out the devices that already have it
    lacking: tuple[str, str] | None = None

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

    def selection(self, t: Target) -> DeviceSelection:
        """The target as a selection the database resolves; unknown UDIDs are refused (NotFound)."""
        if t.udids:
            self._known(t.udids)
            return DeviceSelection(udids=t.udids, lacking=t.lacking)
        if t.school_id:
            return DeviceSelection(school_id=t.school_id, role=t.role, lacking=t.lacking)
        if not t.everyone:
            raise ValidationFailed("a target needs devices, a school or everyone")
        return DeviceSelection(lacking=t.lacking)

    def resolve(self, t: Target) -> list[str]:
        sel = self.selection(t)
        with self.tx(readonly=True) as s:
            return sorted(u for q in selected_udids(sel) for u in s.execute(q).scalars())

    def _known(self, udids: tuple[str, ...]) -> None:
        found: set[str] = set()
        with self.tx(readonly=True) as s:
            for k in range(0, len(udids), UDID_CHUNK):
                found.update(s.execute(select(Device.udid).where(Device.udid.in_(udids[k : k + UDID_CHUNK]))).scalars())
        missing = [u for u in udids if u not in found]
        if missing:
            raise NotFound(f"unknown device(s): {', '.join(missing[:10])}", details={"unknown": missing})


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

        ``udids``, when given, are the already-resolved devices of ``target``; else the database
        chooses them (one ``INSERT … SELECT``), and the result carries no UDID list.
        """
        now = self.clock()
        body = command.to_plist()
        if job is not None:
            job_id = job["id"]
        fields = dict(command_uuid=command.command_uuid, request_type=command.request_type, body=body, now=now,
                      priority=priority, job_id=job_id, created_by=actor, expires_at=expires_at,
                      profile_id=profile_id, job=job, encrypt=encrypt)
        if udids is None:
            count = self.queue.enqueue_selected(self.resolver.selection(target), push=push, **fields)
            udids = []
        else:
            count = len(udids)
            if udids or job is not None:
                self.queue.enqueue(udids=udids, **fields)
                if push:
                    self.pushes.request(udids, now)
        log.info("queued %s %s for %d device(s) (%s) by %s", command.request_type, command.command_uuid,
                 count, target.describe(), actor)
        return Enqueued(command.command_uuid, command.request_type, count, udids)

    def enqueue_request(self, request_type: str, params: dict | None, target: Target, **kw) -> Enqueued:
        return self.enqueue(new_command(request_type, params), target, **kw)
