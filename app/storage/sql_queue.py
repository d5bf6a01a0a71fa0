"""SQL implementation of CommandQueue: per-device queue, priority then FIFO.

The enqueue side lives in ``app.storage.sql_enqueue``; this module is the device side: record
a report, hand out the next command. Every device request runs it, so its statements are built
once and run on the DB-API connection (``app.storage.sql_raw``), one transaction per request.
An Idle that finds nothing to send is a read (no write lock on SQLite); ``last_seen_at`` is
written at most once per ``seen_every`` per device and process, whatever the device reports.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from typing import Callable

from sqlalchemy import bindparam, insert, select, update

from app.db.models import Command, CommandEvent, Device, QueueItem
from app.storage.interfaces import JoinedWrites, NextCommand, ReportOutcome
from app.storage.sql_base import one_of
from app.storage.sql_raw import RawStatement, RawTx, raw_tx
from app.storage.sql_enqueue import SQLEnqueue
from mdm.commands import Report
from mdm.errors import UnknownCommand

STATUS_OF_REPORT = {
    "Acknowledged": "acknowledged",
    "Error": "error",
    "CommandFormatError": "format_error",
    "NotNow": "not_now",
}
FINAL = ("acknowledged", "error", "format_error", "cancelled", "expired", "retried")
PENDING = ("queued", "sent", "not_now")
SEEN_EVERY = dt.timedelta(seconds=60)
NOTHING = ReportOutcome(None, None, None)


def _next_stmt(statuses: tuple[str, ...]):
    return (select(QueueItem.id, QueueItem.command_uuid, Command.request_type, Command.body, Command.expires_at,
                   Command.profile_id, Command.encrypt)
            .join(Command, Command.uuid == QueueItem.command_uuid)
            # the first status condition is the pending index's own predicate, so the database uses it
            # (SQLite only uses a partial index when the query repeats its WHERE term)
            .where(QueueItem.udid == bindparam("udid"), one_of(QueueItem.status, PENDING),
                   *([one_of(QueueItem.status, statuses)] if statuses != PENDING else []))
            .order_by(QueueItem.priority.desc(), QueueItem.id)
            .limit(1))


# Idle also re-sends what was sent but never answered (and what the device put off with NotNow)
_NEXT_IDLE = RawStatement(_next_stmt(PENDING))
_NEXT_IDLE_LOCK = RawStatement(_next_stmt(PENDING).with_for_update(of=QueueItem))
_NEXT_AFTER_REPORT = RawStatement(_next_stmt(("queued",)).with_for_update(of=QueueItem))
_REPORTED = RawStatement(
    select(QueueItem.id, QueueItem.status, QueueItem.sent_count, Command.request_type, Command.item_key,
           Command.item_hash)
    .join(Command, Command.uuid == QueueItem.command_uuid)
    .where(QueueItem.udid == bindparam("udid"), QueueItem.command_uuid == bindparam("cu"))
    .with_for_update(of=QueueItem))
_COMPLETED = RawStatement(update(QueueItem).where(QueueItem.id == bindparam("qid")).values(
    status=bindparam("new_status"), completed_at=bindparam("at"), result=bindparam("raw"),
    error_chain=bindparam("chain")))
_PUT_OFF = RawStatement(update(QueueItem).where(QueueItem.id == bindparam("qid")).values(status="not_now",
                                                                                        error_chain=None))
_SENT = RawStatement(update(QueueItem).where(QueueItem.id == bindparam("qid")).values(
    status="sent", sent_at=bindparam("at"), sent_count=QueueItem.sent_count + 1))
_EXPIRED = RawStatement(update(QueueItem).where(QueueItem.id == bindparam("qid")).values(
    status="expired", completed_at=bindparam("at")))
_EVENT = RawStatement(insert(CommandEvent).values(udid=bindparam("udid"), command_uuid=bindparam("command_uuid"),
                                                  status=bindparam("status"), at=bindparam("at")))
_SEEN = RawStatement(update(Device).where(Device.udid == bindparam("device")).values(last_seen_at=bindparam("at")))


def error_chain(report: Report) -> str | None:
    """What the queue keeps of a report's ErrorChain."""
    return json.dumps(report.error_chain, default=str) if report.error_chain else None


def expired(row, now: dt.datetime) -> bool:
    """Whether a next-command row (its ``expires_at``) has expired by ``now``."""
    exp = row.expires_at
    return exp is not None and (exp if exp.tzinfo else exp.replace(tzinfo=dt.timezone.utc)) <= now


def next_command(row) -> NextCommand:
    return NextCommand(row.command_uuid, row.request_type, row.body, row.profile_id, row.encrypt)


class SQLCommandQueue(SQLEnqueue):
    def __init__(self, sessions, *, seen_every: dt.timedelta = SEEN_EVERY, max_seen: int = 200_000) -> None:
        super().__init__(sessions)
        self.seen_every = seen_every
        self._seen: dict[str, dt.datetime] = {}  # udid -> last_seen_at this process last wrote
        self._max_seen = max_seen
        self._seen_lock = threading.Lock()

    def report_and_next(self, udid: str, report: Report, now: dt.datetime, *,
                        pending: bool | None = None,
                        on_recorded: Callable[[ReportOutcome], None] | None = None,
                        joined: JoinedWrites | None = None,
                        ) -> tuple[ReportOutcome, NextCommand | None]:
        """``pending``: whether commands wait for the device, when the caller read it in this
        request (False saves the read, True goes straight to the write; a command queued since
        then comes with its push). ``on_recorded``: called with a newly recorded result inside the
        transaction that records it (a ``raw_tx`` it opens joins that transaction).
        ``joined``: what ``on_recorded`` writes, as data; a queue may then write it itself with the
        report and not call ``on_recorded`` (``ReportOutcome.result_recorded`` says the result's
        writes are made). The PostgreSQL queue does, in the one statement that records the report;
        this one calls ``on_recorded`` either way."""
        stale = self._seen_is_stale(udid, now)
        if report.is_idle:
            if not stale:
                if pending is False:
                    return NOTHING, None
                if pending is None:
                    with raw_tx(self.engine, readonly=True) as c:
                        if c.first(_NEXT_IDLE, {"udid": udid}) is None:
                            return NOTHING, None  # most Idle check-ins: nothing to send, seen recently
            outcome, nxt = NOTHING, self._idle_next(udid, now, stale)
        else:
            with raw_tx(self.engine) as c:
                outcome = self._record(c, udid, report, now)
                if on_recorded is not None and outcome.command_uuid and not outcome.duplicate:
                    on_recorded(outcome)
                # (an acknowledgement right after its Idle: seen a moment ago)
                nxt = self._send_next(c, udid, now, idle=False, seen=stale)
        if stale:
            self._note_seen(udid, now)
        return outcome, nxt

    def _idle_next(self, udid: str, now: dt.datetime, seen: bool) -> NextCommand | None:
        """An Idle's write: hand out the next command (and note the device seen)."""
        with raw_tx(self.engine) as c:
            return self._send_next(c, udid, now, idle=True, seen=seen)

    def _seen_is_stale(self, udid: str, now: dt.datetime) -> bool:
        last = self._seen.get(udid)
        return last is None or now - last >= self.seen_every or now < last

    def _note_seen(self, udid: str, now: dt.datetime) -> None:
        with self._seen_lock:
            if len(self._seen) >= self._max_seen:
                self._seen.clear()  # forgetting only costs one extra write per device
            self._seen[udid] = now

    def _record(self, c: RawTx, udid: str, report: Report, now: dt.datetime) -> ReportOutcome:
        cu = report.command_uuid
        row = c.first(_REPORTED, {"udid": udid, "cu": cu})
        if row is None or row.sent_count == 0:
            raise UnknownCommand(f"command {cu} was never sent to this device")
        if row.status in FINAL:
            # a repeated report (e.g. after a lost reply): already recorded, change nothing
            return ReportOutcome(cu, row.request_type, row.status, duplicate=True)
        new = STATUS_OF_REPORT[report.status]
        if new == "not_now":
            c.run(_PUT_OFF, {"qid": row.id})
        else:
            c.run(_COMPLETED, {"qid": row.id, "new_status": new, "at": now, "raw": report.raw,
                               "chain": error_chain(report)})
        c.run(_EVENT, {"udid": udid, "command_uuid": cu, "status": new, "at": now})
        return ReportOutcome(cu, row.request_type, new, item_key=row.item_key, item_hash=row.item_hash)

    def _send_next(self, c: RawTx, udid: str, now: dt.datetime, *, idle: bool, seen: bool) -> NextCommand | None:
        """Mark the next command sent and return it (an Idle also re-sends what is pending, a
        report only hands out what is queued); expired commands on the way are marked so.
        ``seen``: write the device's ``last_seen_at`` too."""
        nxt = self._next(c, udid, _NEXT_IDLE_LOCK if idle else _NEXT_AFTER_REPORT, now)
        if seen:
            c.run(_SEEN, {"device": udid, "at": now})
        return nxt

    def _next(self, c: RawTx, udid: str, stmt, now: dt.datetime) -> NextCommand | None:
        while True:
            row = c.first(stmt, {"udid": udid})
            if row is None:
                return None
            if expired(row, now):
                c.run(_EXPIRED, {"qid": row.id, "at": now})
                c.run(_EVENT, {"udid": udid, "command_uuid": row.command_uuid, "status": "expired", "at": now})
                continue
            c.run(_SENT, {"qid": row.id, "at": now})
            c.run(_EVENT, {"udid": udid, "command_uuid": row.command_uuid, "status": "sent", "at": now})
            return next_command(row)
