"""SQL implementation of CommandQueue: per-device queue, priority then FIFO.

The enqueue side lives in ``app.storage.sql_enqueue``; this module is the device side:
record a report, hand out the next command."""

from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import insert, select, update

from app.db.models import Command, CommandEvent, Device, QueueItem
from app.storage.interfaces import NextCommand, ReportOutcome
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


class SQLCommandQueue(SQLEnqueue):
    def report_and_next(self, udid: str, report: Report, now: dt.datetime) -> tuple[ReportOutcome, NextCommand | None]:
        with self.tx() as s:
            outcome = ReportOutcome(None, None, None)
            if not report.is_idle:
                outcome = self._record(s, udid, report, now)
            statuses = ("queued", "sent", "not_now") if report.is_idle else ("queued",)
            nxt = self._next(s, udid, statuses, now)
            s.execute(update(Device).where(Device.udid == udid).values(last_seen_at=now))
        return outcome, nxt

    def _record(self, s, udid: str, report: Report, now: dt.datetime) -> ReportOutcome:
        row = s.execute(
            select(QueueItem.id, QueueItem.status, QueueItem.sent_count, Command.request_type, Command.item_key,
                   Command.item_hash)
            .join(Command, Command.uuid == QueueItem.command_uuid)
            .where(QueueItem.udid == udid, QueueItem.command_uuid == report.command_uuid)
            .with_for_update(of=QueueItem)
        ).first()
        if row is None or row.sent_count == 0:
            raise UnknownCommand(f"command {report.command_uuid} was never sent to this device")
        if row.status in FINAL:
            # a repeated report (e.g. after a lost reply): already recorded, change nothing
            return ReportOutcome(report.command_uuid, row.request_type, row.status, duplicate=True)
        new = STATUS_OF_REPORT[report.status]
        values: dict = {"status": new}
        if new != "not_now":
            values.update(completed_at=now, result=report.raw,
                          error_chain=json.dumps(report.error_chain, default=str) if report.error_chain else None)
        else:
            values["error_chain"] = None
        s.execute(update(QueueItem).where(QueueItem.id == row.id).values(**values))
        s.execute(insert(CommandEvent).values(udid=udid, command_uuid=report.command_uuid, status=new, at=now))
        return ReportOutcome(report.command_uuid, row.request_type, new, item_key=row.item_key,
                             item_hash=row.item_hash)

    def _next(self, s, udid: str, statuses: tuple[str, ...], now: dt.datetime) -> NextCommand | None:
        while True:
            row = s.execute(
                select(QueueItem.id, QueueItem.command_uuid, Command.request_type, Command.body, Command.expires_at,
                       Command.profile_id, Command.encrypt)
                .join(Command, Command.uuid == QueueItem.command_uuid)
                .where(QueueItem.udid == udid, QueueItem.status.in_(statuses))
                .order_by(QueueItem.priority.desc(), QueueItem.id)
                .limit(1)
                .with_for_update(of=QueueItem)
            ).first()
            if row is None:
                return None
            exp = row.expires_at
            if exp is not None and (exp if exp.tzinfo else exp.replace(tzinfo=dt.timezone.utc)) <= now:
                s.execute(update(QueueItem).where(QueueItem.id == row.id).values(status="expired", completed_at=now))
                s.execute(insert(CommandEvent).values(udid=udid, command_uuid=row.command_uuid, status="expired", at=now))
                continue
            s.execute(update(QueueItem).where(QueueItem.id == row.id)
                      .values(status="sent", sent_at=now, sent_count=QueueItem.sent_count + 1))
            s.execute(insert(CommandEvent).values(udid=udid, command_uuid=row.command_uuid, status="sent", at=now))
            return NextCommand(row.command_uuid, row.request_type, row.body, row.profile_id, row.encrypt)
