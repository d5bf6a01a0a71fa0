"""Scheduled work that must run once across all instances: inventory refresh.

Devices whose inventory is older than ``inventory_max_age`` get DeviceInformation,
ProfileList and InstalledApplicationList queued (unless such a command is still
pending for them). On PostgreSQL a transaction-level advisory lock makes one
instance do it per round; the work itself is idempotent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
import zlib
from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import and_, exists, func, or_, select, text

from app.db.models import Command, Device, QueueItem
from app.services.clock import Clock, utcnow
from app.services.commands import CommandService, Target
from app.storage.sql_base import SQLStore
from mdm.commands import new_command

log = logging.getLogger("schoolmdm.scheduler")
INVENTORY = ("DeviceInformation", "ProfileList", "InstalledApplicationList")


def lock_key(name: str) -> int:
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


_LOCAL: dict[tuple[int, str], threading.Lock] = {}


@contextmanager
def singleton(engine, name: str) -> Iterator[bool]:
    """Yield True when this process may run ``name`` now (a PostgreSQL session advisory lock held for
    the whole round, across its transactions); on SQLite (one process per database) a process lock."""
    if engine.dialect.name != "postgresql":
        lock = _LOCAL.setdefault((id(engine), name), threading.Lock())
        got = lock.acquire(blocking=False)
        try:
            yield got
        finally:
            if got:
                lock.release()
        return
    with engine.connect() as conn:
        got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": lock_key(name)}).scalar())
        conn.commit()
        try:
            yield got
        finally:
            if got:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": lock_key(name)})
                conn.commit()


class InventoryRefresh(SQLStore):
    def __init__(self, sessions, commands: CommandService, *, max_age: dt.timedelta, batch: int = 2000,
                 clock: Clock = utcnow) -> None:
        super().__init__(sessions)
        self.commands = commands
        self.max_age = max_age
        self.batch = batch
        self.clock = clock

    def stale_devices(self, now: dt.datetime) -> list[str]:
        pending = exists().where(and_(QueueItem.udid == Device.udid, QueueItem.status.in_(("queued", "sent", "not_now")),
                                      QueueItem.command_uuid == Command.uuid,
                                      Command.request_type == "DeviceInformation"))
        q = (select(Device.udid).where(Device.enrollment_state == "enrolled",
                                        or_(Device.inventory_at.is_(None), Device.inventory_at < now - self.max_age),
                                        ~pending)
             .order_by(Device.inventory_at.is_(None).desc(), Device.inventory_at).limit(self.batch))
        with self.tx() as s:
            return list(s.execute(q).scalars())

    def run_once(self) -> int:
        with singleton(self.sessions.kw["bind"], "inventory") as mine:
            if not mine:
                return 0
            udids = self.stale_devices(self.clock())
            if not udids:
                return 0
            for rt in INVENTORY:
                self.commands.enqueue(new_command(rt), Target(udids=tuple(udids)), actor="scheduler:inventory",
                                      udids=udids, priority=-10)
        log.info("inventory refresh queued for %d device(s)", len(udids))
        return len(udids)


async def run_periodically(fn, interval: float, name: str) -> None:
    while True:
        try:
            await asyncio.to_thread(fn)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # keep the schedule alive through database trouble
            log.warning("%s: %s", name, e)
        await asyncio.sleep(interval)


class RepushStale(SQLStore):
    """Nothing stuck: devices with pending commands that have not come back since their last push
    are pushed again (APNs delivery is best-effort; a device may also have missed its push).

    Not while the server is still working through the wave the device was pushed with, though:
    when thousands of devices were pushed at once, a device that got its push may wait its turn for
    longer than ``after``, and pushing it again only adds a session to the backlog (measured: 13,489
    extra pushes in a 25,000-iPad storm). A device is held back while the most recently pushed of
    the devices that came back (within the last ``after``) was pushed in its wave (within ``wave``
    of it): the server is still answering that wave and has not overtaken it, so the device is
    queued, not lost. Once a device pushed well after it has come back, or nobody from its wave has
    come back for ``after``, the usual rule applies.
    """

    def __init__(self, sessions, pushes, *, after: dt.timedelta, batch: int = 5000, clock: Clock = utcnow,
                 wave: dt.timedelta = dt.timedelta(seconds=60)) -> None:
        super().__init__(sessions)
        self.pushes = pushes
        self.after = after
        self.wave = wave
        self.batch = batch
        self.clock = clock

    def run_once(self) -> int:
        now = self.clock()
        with singleton(self.sessions.kw["bind"], "repush") as mine:
            if not mine:
                return 0
            q = (select(Device.udid, Device.last_push_at, func.min(QueueItem.queued_at))
                 .join(QueueItem, QueueItem.udid == Device.udid)
                 .where(Device.enrollment_state == "enrolled", Device.token_invalid.is_(False),
                        QueueItem.status.in_(("queued", "sent", "not_now")),
                        Device.last_push_at.is_not(None), Device.last_push_at < now - self.after,
                        or_(Device.last_seen_at.is_(None), Device.last_seen_at < Device.last_push_at))
                 .group_by(Device.udid, Device.last_push_at).limit(self.batch))
            with self.tx() as s:
                rows = s.execute(q).all()
                latest = self._latest_push_answered(s, now) if rows else None
            # back off: wait at least as long as the oldest pending command had already waited at the
            # last push, so an iPad that is off for the weekend is pushed a handful of times, not hourly
            udids = [u for u, pushed, queued in rows
                     if now - _aware(pushed) >= max(self.after, _aware(pushed) - _aware(queued))
                     and not (latest is not None and abs(latest - _aware(pushed)) <= self.wave)]
            if udids:
                self.pushes.request(udids, now)
                log.info("pushing %d device(s) again that have pending commands and did not come back", len(udids))
        return len(udids)

    def _latest_push_answered(self, s, now: dt.datetime) -> dt.datetime | None:
        """The latest push that a device answered within the last ``after`` (None: nobody did)."""
        t = s.execute(select(func.max(Device.last_push_at))
                      .where(Device.last_push_at.is_not(None), Device.last_seen_at >= now - self.after,
                             Device.last_seen_at >= Device.last_push_at)).scalar()
        return _aware(t) if t is not None else None


def _aware(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)
