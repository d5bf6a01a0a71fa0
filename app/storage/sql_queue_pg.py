"""The command queue on PostgreSQL: each step of a device request in one statement.

On PostgreSQL every statement is a network round trip, and each costs the server ~0.1 ms of CPU
in psycopg and its thread, and the database about as much again. The SQLite queue
(``app.storage.sql_queue``) takes a step in several statements: an Idle that gets a command ran
BEGIN, the locking SELECT, the UPDATE to ``sent``, the event's INSERT, the ``last_seen_at``
UPDATE and COMMIT. Here the same step is one statement: data-modifying CTEs around the same
locking SELECT, and the Idle's runs on its own (autocommit, so without BEGIN and COMMIT). An
acknowledgement records its report (lock, complete, event) in one statement and hands out the
next command in another.

The rows written are the same as the SQLite queue's, and the storage contract suite runs against
both. What is rare stays on the general path: a NotNow, and a next command that has expired
(the statement does not touch it; the general loop marks it expired and looks further).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import bindparam, insert, literal, or_, select, update

from app.db.models import Command, CommandEvent, Device, QueueItem
from app.storage.interfaces import NextCommand, ReportOutcome
from app.storage.sql_queue import (FINAL, PENDING, STATUS_OF_REPORT, SQLCommandQueue, _next_stmt, error_chain, expired,
                                   next_command)
from app.storage.sql_base import one_of
from app.storage.sql_raw import RawSelect, RawStatement, RawTx, in_raw_tx
from mdm.commands import Report
from mdm.errors import UnknownCommand

_UDID = bindparam("udid", type_=QueueItem.udid.type)
_AT = bindparam("at", type_=QueueItem.sent_at.type)


def _send_next_stmt(statuses: tuple[str, ...], *, seen: bool):
    """The next command for ``udid``, locked, marked sent with its event (unless it has expired),
    and the device's ``last_seen_at`` when ``seen``. Returns the command with ``expires_at``."""
    nxt = _next_stmt(statuses).with_for_update(of=QueueItem).cte("nxt")
    live = or_(nxt.c.expires_at.is_(None), nxt.c.expires_at > _AT)
    sent = (update(QueueItem).where(QueueItem.id == nxt.c.id, live)
            .values(status="sent", sent_at=_AT, sent_count=QueueItem.sent_count + 1).cte("sent"))
    event = insert(CommandEvent).from_select(
        ["udid", "command_uuid", "status", "at"],
        select(_UDID, nxt.c.command_uuid, literal("sent", CommandEvent.status.type), _AT).where(live)).cte("event")
    stmt = select(nxt).add_cte(sent).add_cte(event)
    if seen:
        stmt = stmt.add_cte(update(Device).where(Device.udid == _UDID).values(last_seen_at=_AT).cte("seen"))
    return stmt


# an Idle's: on its own, in autocommit; after a report: inside the report's transaction
_IDLE = {seen: RawSelect(_send_next_stmt(PENDING, seen=seen)) for seen in (False, True)}
_AFTER_REPORT = {seen: RawStatement(_send_next_stmt(("queued",), seen=seen)) for seen in (False, True)}


def _record_stmt():
    """Lock the reported command and, when it was sent and is not final yet, complete it with its
    event. Returns the command as it was before (the caller tells unknown and repeated reports)."""
    reported = (select(QueueItem.id, QueueItem.status, QueueItem.sent_count, Command.request_type, Command.item_key,
                       Command.item_hash)
                .join(Command, Command.uuid == QueueItem.command_uuid)
                .where(QueueItem.udid == _UDID, QueueItem.command_uuid == bindparam("cu"))
                .with_for_update(of=QueueItem).cte("reported"))
    new_status = bindparam("new_status", type_=QueueItem.status.type)
    done = (update(QueueItem)
            .where(QueueItem.id == reported.c.id, reported.c.sent_count > 0, ~one_of(reported.c.status, FINAL))
            .values(status=new_status, completed_at=_AT, result=bindparam("raw"), error_chain=bindparam("chain"))
            .returning(QueueItem.command_uuid).cte("done"))
    event = insert(CommandEvent).from_select(["udid", "command_uuid", "status", "at"],
                                             select(_UDID, done.c.command_uuid, new_status, _AT)).cte("event")
    return select(reported).add_cte(done).add_cte(event)


_RECORD = RawStatement(_record_stmt())


class PGCommandQueue(SQLCommandQueue):
    """``SQLCommandQueue`` with each step in one statement (see the module's docstring)."""

    def _idle_next(self, udid: str, now: dt.datetime, seen: bool) -> NextCommand | None:
        if in_raw_tx(self.engine):  # joining a transaction: its statements, no autocommit
            return super()._idle_next(udid, now, seen)
        row = _IDLE[seen].first(self.engine, {"udid": udid, "at": now})
        if row is not None and expired(row, now):
            return super()._idle_next(udid, now, False)  # (seen: written just now)
        return None if row is None else next_command(row)

    def _send_next(self, c: RawTx, udid: str, now: dt.datetime, *, idle: bool, seen: bool) -> NextCommand | None:
        if idle:
            return super()._send_next(c, udid, now, idle=idle, seen=seen)
        row = c.first(_AFTER_REPORT[seen], {"udid": udid, "at": now})
        if row is not None and expired(row, now):
            return super()._send_next(c, udid, now, idle=False, seen=False)
        return None if row is None else next_command(row)

    def _record(self, c: RawTx, udid: str, report: Report, now: dt.datetime) -> ReportOutcome:
        new = STATUS_OF_REPORT[report.status]
        if new == "not_now":
            return super()._record(c, udid, report, now)
        cu = report.command_uuid
        row = c.first(_RECORD, {"udid": udid, "cu": cu, "new_status": new, "at": now, "raw": report.raw,
                                "chain": error_chain(report)})
        if row is None or row.sent_count == 0:
            raise UnknownCommand(f"command {cu} was never sent to this device")
        if row.status in FINAL:
            return ReportOutcome(cu, row.request_type, row.status, duplicate=True)
        return ReportOutcome(cu, row.request_type, new, item_key=row.item_key, item_hash=row.item_hash)
