"""Ready out of the box: a device that enrolls with ``AwaitingConfiguration`` gets its school's
full blueprint for its role, then ``DeviceConfigured`` once every command of that job is
acknowledged, which lets it leave Setup Assistant.

Added by wrapping the check-in and connect services (like ``app.services.events``):
``SetupCheckin`` starts the set-up on such a TokenUpdate (and gives an ADE device the role
its serial rule says at Authenticate), ``SetupConnect`` follows the job's results. A command
of the set-up job that fails stops it: ``device_setup`` says ``failed`` with the reason, for
the support desk; acknowledging the failed commands later (``jobs retry``) resumes it, and a
DeviceConfigured sent by hand also completes it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time

from sqlalchemy import and_, bindparam, or_, select, update

from app.db.models import Command, Device, Profile, QueueItem
from app.db.models_ade import SETUP_UNDER_WAY, DeviceSetup
from app.services.clock import Clock, utcnow
from app.services.commands import Target
from app.services.connect import ConnectResult
from app.storage.sql_base import SQLStore, one_of
from mdm.checkin import Authenticate, CheckinMessage, TokenUpdate
from mdm.commands import Report, new_command
from mdm.errors import NotFound

log = logging.getLogger("schoolmdm.setup")

FINAL = ("acknowledged", "error", "format_error")
FAILED = ("error", "format_error", "expired")
DONE = ("acknowledged", "retried", "cancelled")  # queue statuses that no longer hold a set-up back
PRIORITY = 10  # ahead of routine work (inventory refresh runs at -10)
STALE = dt.timedelta(minutes=5)
START_BUDGET = 5.0  # seconds a TokenUpdate may spend starting others' set-ups (the request timeout is 30)
_UNDER_WAY = select(DeviceSetup.udid).where(DeviceSetup.udid == bindparam("udid"),
                                            one_of(DeviceSetup.state, SETUP_UNDER_WAY))


def _iso(t):
    return t.isoformat() if t else None


def failure_reason(request_type: str, status: str, chain: list | None, what: str | None = None) -> str:
    name = f"{request_type} {what!r}" if what else request_type
    if status == "format_error":
        return f"{name}: the device could not read the command (CommandFormatError)"
    first = chain[0] if chain and isinstance(chain[0], dict) else {}
    text = first.get("LocalizedDescription") or first.get("USEnglishDescription") or "no reason given"
    code = f" ({first.get('ErrorDomain')} {first.get('ErrorCode')})" if first.get("ErrorDomain") else ""
    return f"{name} failed: {text}{code}"


class SetupTracker(SQLStore):
    def __init__(self, sessions, blueprint_push, commands, ade_store, *, clock: Clock = utcnow) -> None:
        super().__init__(sessions)
        self.blueprint_push = blueprint_push
        self.commands = commands
        self.ade = ade_store
        self.clock = clock
        self._starting = threading.Lock()

    # -- check-in side -----------------------------------------------------------------------
    def authenticated(self, udid: str, serial: str | None) -> None:
        role = self.ade.role_for_serial(serial)
        if role:
            with self.tx() as s:
                s.execute(update(Device).where(Device.udid == udid, Device.role != role).values(role=role))

    def token_update(self, udid: str, first: bool) -> None:
        """AwaitingConfiguration: queue the set-up (a new enrollment, or again after a failure),
        then start what is queued."""
        now = self.clock()
        with self.tx() as s:
            row = s.get(DeviceSetup, udid, with_for_update=True)
            under_way = not first and row is not None and row.state != "failed"
            if not under_way:
                fresh = {"state": "queued", "job_id": None, "configured_command": None, "error": None,
                         "started_at": now, "finished_at": None}
                if row is None:
                    s.add(DeviceSetup(udid=udid, **fresh))
                else:
                    for k, v in fresh.items():
                        setattr(row, k, v)
            elif row.state not in ("queued", "starting"):
                return
        self.start_queued(budget=START_BUDGET)  # also takes up a start that failed before (the device sends TokenUpdate again)

    def start_queued(self, *, budget: float | None = None) -> int:
        """Start every queued set-up: each school's blueprint pushed to its devices as one job.

        One thread per process starts set-ups while the others only queue theirs, so devices that
        enroll together share a blueprint plan and a job instead of one each; the starter looks
        again after letting go, so nothing queued meanwhile is left behind. Claims are atomic in
        the database (instances share the work); a claim a crashed process left is retaken after
        ``STALE``. ``budget`` (seconds) bounds a starter that is a device's request: past it, a
        background thread takes over what is left, so no TokenUpdate waits for a whole wave."""
        total = 0
        deadline = None if budget is None else time.monotonic() + budget
        while True:
            if not self._starting.acquire(blocking=False):
                return total  # the starting thread takes ours along
            over = False
            try:
                while n := self._claim_and_start():
                    total += n
                    if deadline is not None and time.monotonic() > deadline:
                        over = True
                        break
            finally:
                self._starting.release()
            if over:
                threading.Thread(target=self._start_rest, name="device-setup", daemon=True).start()
                return total
            with self.tx() as s:
                if s.execute(select(DeviceSetup.udid).where(DeviceSetup.state == "queued").limit(1)).first() is None:
                    return total

    def _start_rest(self) -> None:
        try:
            self.start_queued()
        except Exception as e:  # what is still queued is started by the periodic run
            log.warning("device set-up left for the periodic start: %s: %s", type(e).__name__, e)

    def _claim_and_start(self) -> int:
        now = self.clock()
        with self.tx() as s:
            claimed = list(s.execute(
                update(DeviceSetup).where(or_(DeviceSetup.state == "queued",
                                              and_(DeviceSetup.state == "starting", DeviceSetup.started_at < now - STALE)))
                .values(state="starting", started_at=now).returning(DeviceSetup.udid)
                .execution_options(synchronize_session=False)).scalars())
            schools = {u: sc for u, sc in s.execute(select(Device.udid, Device.school_id)
                                                    .where(Device.udid.in_(claimed)))} if claimed else {}
        by_school: dict[str | None, list[str]] = {}
        for udid in claimed:
            by_school.setdefault(schools.get(udid), []).append(udid)
        for school, udids in by_school.items():
            self._start(school, sorted(udids))
        return len(claimed)

    def _start(self, school: str | None, udids: list[str]) -> None:
        job_id, state, error = None, "failed", None
        if school is None:
            error = "the device has no school: no blueprint to set it up with"
        else:
            try:
                res = self.blueprint_push.push(school, actor="setup", udids=udids, priority=PRIORITY)
                job_id, state = res["job_id"], "configuring"
                log.info("set-up of %d device(s) of %s: blueprint v%s, %d command(s)", len(udids), school,
                         res["version"], len(res["commands"]))
            except NotFound as e:
                error = f"set-up cannot start: {e.message}"
                log.warning("set-up of %d device(s) of %s cannot start: %s", len(udids), school, e.message)
            except Exception:  # e.g. the database went away: queued again for the next start
                with self.tx() as s:
                    s.execute(update(DeviceSetup).where(DeviceSetup.udid.in_(udids), DeviceSetup.state == "starting")
                              .values(state="queued"))
                raise
        with self.tx() as s:
            s.execute(update(DeviceSetup).where(DeviceSetup.udid.in_(udids), DeviceSetup.state == "starting")
                      .values(state=state, job_id=job_id, error=error,
                              finished_at=self.clock() if state == "failed" else None))
        if job_id is not None:
            for udid in udids:
                self.check(udid)  # an empty plan, or a device that was faster than us

    def _save(self, udid: str, **values) -> None:
        with self.tx() as s:
            s.execute(update(DeviceSetup).where(DeviceSetup.udid == udid).values(**values))

    # -- connect side -------------------------------------------------------------------------
    def on_result(self, udid: str, request_type: str, status: str, chain: list | None, *, more: bool,
                  under_way: bool | None = None) -> bool:
        """A final result; ``more``: the server answered with the device's next command;
        ``under_way``: whether a set-up was configuring or failed when this request began (read with
        the device's record; None: not known). True when DeviceConfigured was queued now (without a
        push when not ``more``: the caller hands it over in its answer)."""
        if request_type == "DeviceConfigured":
            self._configured(udid, status, chain)
            return False
        if status == "acknowledged" and more:
            return False  # the device still has work queued: its last result of the session decides
        if under_way is False:
            # no set-up to finish (most results: a profile push, an inventory answer); one begun since
            # this request started has only just queued its commands, so it has nothing to finish yet
            return False
        return self.check(udid, push=more)

    def _configured(self, udid: str, status: str, chain: list | None) -> None:
        now = self.clock()
        with self.tx() as s:
            row = s.get(DeviceSetup, udid, with_for_update=True)
            if row is None or row.state == "configured":
                return
            if status != "acknowledged":
                row.state, row.error = "failed", failure_reason("DeviceConfigured", status, chain)
                return
            row.state, row.finished_at, row.error = "configured", now, None
            s.execute(update(Device).where(Device.udid == udid).values(awaiting_configuration=False,
                                                                       configured_at=now))
        log.info("set-up of %s complete", udid)

    def check(self, udid: str, *, push: bool = True) -> bool:
        """Look at the set-up job's commands for this device: one failed -> ``failed`` with its
        reason; all acknowledged -> DeviceConfigured queued (once). True when it was queued."""
        with self.conn(readonly=True) as c:  # most results belong to no set-up: no write lock for them
            if c.execute(_UNDER_WAY, {"udid": udid}).first() is None:
                return False
        with self.tx() as s:
            row = s.get(DeviceSetup, udid, with_for_update=True)
            if row is None or row.state not in SETUP_UNDER_WAY or row.job_id is None:
                return False
            items = s.execute(select(QueueItem.status, QueueItem.error_chain, Command.request_type,
                                     Command.item_key, Profile.name)
                              .join(Command, Command.uuid == QueueItem.command_uuid)
                              .outerjoin(Profile, Profile.id == Command.profile_id)
                              .where(Command.job_id == row.job_id, QueueItem.udid == udid)
                              .order_by(QueueItem.id)).all()
            bad = next((i for i in items if i.status in FAILED), None)
            if bad is not None:
                chain = json.loads(bad.error_chain) if bad.error_chain else None
                reason = failure_reason(bad.request_type, bad.status, chain, bad.name or bad.item_key)
                if row.state != "failed" or row.error != reason:
                    row.state, row.error, row.finished_at = "failed", reason, row.finished_at or self.clock()
                    log.warning("set-up of %s failed: %s", udid, reason)
                return False
            if any(i.status not in DONE for i in items):
                return False
            row.state, row.error, row.finished_at = "finishing", None, None
        res = self.commands.enqueue(new_command("DeviceConfigured"), Target(udids=(udid,)), actor="setup",
                                    udids=[udid], priority=PRIORITY, push=push)
        self._save(udid, configured_command=res.command_uuid)
        return True


def setup_summary(s, udid: str) -> dict | None:
    """A device's set-up for the support desk (``devices.get``), read in the caller's session."""
    row = s.get(DeviceSetup, udid)
    if row is None:
        return None
    return {"state": row.state, "error": row.error, "job_id": row.job_id, "started_at": _iso(row.started_at),
            "finished_at": _iso(row.finished_at)}


class SetupCheckin:
    def __init__(self, inner, setup: SetupTracker) -> None:
        self.inner = inner
        self.setup = setup

    def process(self, msg: CheckinMessage, fingerprint: str) -> tuple[bytes, bool]:
        body, first = self.inner.process(msg, fingerprint)
        if isinstance(msg, Authenticate):
            self.setup.authenticated(msg.udid, msg.serial_number)
        elif isinstance(msg, TokenUpdate) and msg.awaiting_configuration:
            try:
                self.setup.token_update(msg.udid, first)
            except Exception as e:  # the TokenUpdate itself is stored: the background starts it later
                log.warning("set-up of %s not started yet: %s: %s", msg.udid, type(e).__name__, e)
        return body, first

    def handle(self, msg: CheckinMessage, fingerprint: str) -> bytes:
        return self.process(msg, fingerprint)[0]


class SetupConnect:
    def __init__(self, inner, setup: SetupTracker) -> None:
        self.inner = inner
        self.setup = setup

    def process(self, report: Report, **known) -> ConnectResult:
        res = self.inner.process(report, **known)
        o = res.outcome
        if res.new_result and o.status in FINAL:
            more = res.next is not None
            device = known.get("device")
            if self.setup.on_result(report.udid, o.request_type, o.status, report.error_chain, more=more,
                                    under_way=device.setup_under_way if device else None) and not more:
                # DeviceConfigured goes out in this answer, as an Idle would fetch it (no push, no new session)
                idle = Report(report.udid, "Idle", None, None, b"", {"UDID": report.udid, "Status": "Idle"})
                return ConnectResult(o, self.inner.process(idle).next)
        return res

    def handle(self, report: Report, **known) -> bytes:
        return self.process(report, **known).body
