"""The command queue on PostgreSQL: each step of a device request in one statement.

On PostgreSQL every statement is a network round trip, and each costs the server ~0.1 ms of CPU
in psycopg and its thread, and the database about as much again. The SQLite queue
(``app.storage.sql_queue``) takes a step in several statements: an Idle that gets a command ran
BEGIN, the locking SELECT, the UPDATE to ``sent``, the event's INSERT, the ``last_seen_at``
UPDATE and COMMIT. Here the same step is one statement: data-modifying CTEs around the same
locking SELECT, and the Idle's runs on its own (autocommit, so without BEGIN and COMMIT). An
acknowledgement is one statement too, in autocommit: record the report (lock, complete, event),
write what the result tells (``JoinedWrites``: the installed profile of an InstallProfile,
DeviceInformation's answer) and hand out the next command. Measured alone: ~80 us of client and
~95 us of PostgreSQL CPU, against ~330 and ~310 us for BEGIN, three statements and COMMIT.

The rows written are the same as the SQLite queue's, and the storage contract suite runs against
both. What is rare stays on the general path: a NotNow, a next command that has expired (the
statement does not touch it; the general loop marks it expired and looks further), a caller
whose writes in the report's transaction are a callback only (no ``joined``), and a report
inside a transaction already open: those take ``SQLCommandQueue``'s statements.
"""

from __future__ import annotations

import datetime as dt
from collections import namedtuple
from typing import Callable

from sqlalchemy import bindparam, exists, insert, literal, or_, select, true, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from app.db.models import Command, CommandEvent, Device, QueueItem
from app.storage.interfaces import JoinedWrites, NextCommand, ReportOutcome
from app.storage.sql_queue import (FINAL, PENDING, STATUS_OF_REPORT, SQLCommandQueue, _next_stmt, error_chain, expired,
                                   next_command)
from app.storage.sql_base import one_of
from app.storage.sql_inventory import device_information_values, profile_acknowledged_insert, save_info_update
from app.storage.sql_raw import RawSelect, in_raw_tx, raw_tx
from mdm.commands import Report
from mdm.errors import UnknownCommand

_UDID = bindparam("udid", type_=QueueItem.udid.type)
_AT = bindparam("at", type_=QueueItem.sent_at.type)


def _send_next_stmt(statuses: tuple[str, ...], *, seen: bool, after=None):
    """The next command for ``udid``, locked, marked sent with its event (unless it has expired),
    and the device's ``last_seen_at`` when ``seen``. Returns the command with ``expires_at``.
    ``after``: a condition for handing out the command (the report was of a command we sent: an
    unknown report changes nothing)."""
    nxt = _next_stmt(statuses)
    if after is not None:
        nxt = nxt.where(after)
    nxt = nxt.with_for_update(of=QueueItem).cte("nxt")
    live = or_(nxt.c.expires_at.is_(None), nxt.c.expires_at > _AT)
    sent = (update(QueueItem).where(QueueItem.id == nxt.c.id, live)
            .values(status="sent", sent_at=_AT, sent_count=QueueItem.sent_count + 1).cte("sent"))
    event = insert(CommandEvent).from_select(
        ["udid", "command_uuid", "status", "at"],
        select(_UDID, nxt.c.command_uuid, literal("sent", CommandEvent.status.type), _AT).where(live)).cte("event")
    ctes = [sent, event]
    if seen:
        ctes.append(update(Device).where(Device.udid == _UDID).values(last_seen_at=_AT).cte("seen"))
    return nxt, ctes


def _idle_stmt(seen: bool):
    nxt, ctes = _send_next_stmt(PENDING, seen=seen)
    return select(nxt).add_cte(*ctes)


# an Idle's: on its own, in autocommit
_IDLE = {seen: RawSelect(_idle_stmt(seen)) for seen in (False, True)}
_NEW_STATUS = bindparam("new_status", type_=QueueItem.status.type)


def _record_ctes():
    """Lock the reported command and, when it was sent and is not final yet, complete it with its
    event. ``reported`` is the command as it was before (the caller tells unknown and repeated
    reports); ``done`` the command completed now, if any."""
    reported = (select(QueueItem.id, QueueItem.status, QueueItem.sent_count, Command.request_type, Command.item_key,
                       Command.item_hash)
                .join(Command, Command.uuid == QueueItem.command_uuid)
                .where(QueueItem.udid == _UDID, QueueItem.command_uuid == bindparam("cu"))
                .with_for_update(of=QueueItem).cte("reported"))
    done = (update(QueueItem)
            .where(QueueItem.id == reported.c.id, reported.c.sent_count > 0, ~one_of(reported.c.status, FINAL))
            .values(status=_NEW_STATUS, completed_at=_AT, result=bindparam("raw"), error_chain=bindparam("chain"))
            .returning(QueueItem.command_uuid).cte("done"))
    event = insert(CommandEvent).from_select(["udid", "command_uuid", "status", "at"],
                                             select(_UDID, done.c.command_uuid, _NEW_STATUS, _AT)).cte("event_done")
    return reported, done, event


def _acknowledged(done, request_type: str):
    """The command completed now (``done``), when it is an acknowledged ``request_type`` that is
    not a blueprint item (blueprint items are applied after the report, ``ResultHandler.joins``)."""
    return (select(done.c.command_uuid).join(Command, Command.uuid == done.c.command_uuid)
            .where(Command.request_type == request_type, Command.item_key.is_(None), _NEW_STATUS == "acknowledged"))


def _report_next_stmt(*, seen: bool, results: bool, info: bool):
    """One acknowledgement's whole step: record the report (``_record_ctes``); with ``results``
    what the result tells (``JoinedWrites``: an InstallProfile's profile now installed, with
    ``info`` DeviceInformation's answer); and hand out the next queued command (only after a
    report of a command we sent). One row: the reported command (``r_``) and the next one (``n_``,
    all None when there is none); no row when the report names no command of this device."""
    reported, done, event = _record_ctes()
    ctes = [done, event]
    if results:
        installed = _acknowledged(done, "InstallProfile").scalar_subquery()
        ctes.append(profile_acknowledged_insert(pg_insert, _UDID, _AT, installed).cte("installed"))
    known = exists(select(reported.c.id).where(reported.c.sent_count > 0))
    nxt, next_ctes = _send_next_stmt(("queued",), seen=False, after=known)
    ctes += next_ctes
    # the device's row is updated once in a statement: the answer and last_seen_at together
    answered = exists(_acknowledged(done, "DeviceInformation")) if info else None
    if info:
        ctes.append(save_info_update(Device.udid == _UDID, answered, **({"last_seen_at": _AT} if seen else {}))
                    .cte("answer"))
    if seen:
        ctes.append(update(Device).where(Device.udid == _UDID, known, *([~answered] if info else []))
                    .values(last_seen_at=_AT).cte("seen"))
    cols = [c.label("r_" + c.key) for c in reported.c] + [c.label("n_" + c.key) for c in nxt.c]
    return select(*cols).select_from(reported.outerjoin(nxt, true())).add_cte(*ctes)


_Next = namedtuple("_Next", "id command_uuid request_type body expires_at profile_id encrypt")
_REPORT_NEXT = {(seen, results, info): RawSelect(_report_next_stmt(seen=seen, results=results, info=info))
                for seen in (False, True) for results, info in ((False, False), (True, False), (True, True))}


class PGCommandQueue(SQLCommandQueue):
    """``SQLCommandQueue`` with each step in one statement (see the module's docstring)."""

    def report_and_next(self, udid: str, report: Report, now: dt.datetime, *,
                        pending: bool | None = None,
                        on_recorded: Callable[[ReportOutcome], None] | None = None,
                        joined: JoinedWrites | None = None,
                        ) -> tuple[ReportOutcome, NextCommand | None]:
        new = None if report.is_idle else STATUS_OF_REPORT[report.status]
        if new in (None, "not_now") or (on_recorded is not None and joined is None) or in_raw_tx(self.engine):
            return super().report_and_next(udid, report, now, pending=pending, on_recorded=on_recorded)
        stale = self._seen_is_stale(udid, now)
        cu = report.command_uuid
        results = on_recorded is not None
        info = results and joined.device_information is not None
        params = {"udid": udid, "cu": cu, "new_status": new, "at": now, "raw": report.raw, "chain": error_chain(report)}
        if info:
            params.update(device_information_values(joined.device_information))
        row = _REPORT_NEXT[stale, results, info].first(self.engine, params)
        if row is None or row.r_sent_count == 0:
            raise UnknownCommand(f"command {cu} was never sent to this device")
        if row.r_status in FINAL:
            outcome = ReportOutcome(cu, row.r_request_type, row.r_status, duplicate=True)
        else:
            outcome = ReportOutcome(cu, row.r_request_type, new, item_key=row.r_item_key, item_hash=row.r_item_hash,
                                    result_recorded=results and new == "acknowledged" and row.r_item_key is None
                                    and (row.r_request_type == "InstallProfile"
                                         or (info and row.r_request_type == "DeviceInformation")))
        if stale:
            self._note_seen(udid, now)
        if row.n_id is None:
            return outcome, None
        nxt = _Next(row.n_id, row.n_command_uuid, row.n_request_type, row.n_body, row.n_expires_at,
                    row.n_profile_id, row.n_encrypt)
        if expired(nxt, now):  # left alone by the statement: the general path marks it, looks further
            with raw_tx(self.engine) as c:
                return outcome, super()._send_next(c, udid, now, idle=False, seen=False)
        return outcome, next_command(nxt)

    def _idle_next(self, udid: str, now: dt.datetime, seen: bool) -> NextCommand | None:
        if in_raw_tx(self.engine):  # joining a transaction: its statements, no autocommit
            return super()._idle_next(udid, now, seen)
        row = _IDLE[seen].first(self.engine, {"udid": udid, "at": now})
        if row is not None and expired(row, now):
            return super()._idle_next(udid, now, False)  # (seen: written just now)
        return None if row is None else next_command(row)
