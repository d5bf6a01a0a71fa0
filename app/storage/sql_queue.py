"""SQL implementation of CommandQueue: per-device queue, priority then FIFO."""

from __future__ import annotations

import datetime as dt
import json
from typing import Sequence

from sqlalchemy import and_, insert, select, update

from app.db.models import Command, CommandEvent, Device, Job, QueueItem
from app.storage.interfaces import NextCommand, QueuedCommand, ReportOutcome
from app.storage.sql_base import SQLStore
from mdm.commands import Report
from mdm.errors import UnknownCommand

STATUS_OF_REPORT = {
    "Acknowledged": "acknowledged",
    "Error": "error",
    "CommandFormatError": "format_error",
    "NotNow": "not_now",
}
FINAL = ("acknowledged", "error", "format_error", "cancelled", "expired", "retried")
INSERT_CHUNK = 5000


class SQLCommandQueue(SQLStore):
    def enqueue(self, *, command_uuid: str, request_type: str, body: bytes, udids: Sequence[str],
                now: dt.datetime, priority: int = 0, job_id: str | None = None,
                created_by: str | None = None, expires_at: dt.datetime | None = None,
                profile_id: int | None = None, job: dict | None = None, encrypt: bool = False,
                item_key: str | None = None, item_hash: str | None = None) -> int:
        """Insert one command body and one queue row per device, set-based."""
        item = QueuedCommand(command_uuid, request_type, body, udids, profile_id, encrypt, item_key, item_hash)
        return self.enqueue_batch([item], now=now, priority=priority, created_by=created_by,
                                  expires_at=expires_at, job=job, job_id=job_id)

    def enqueue_batch(self, items: Sequence[QueuedCommand], *, now: dt.datetime, priority: int = 0,
                      created_by: str | None = None, expires_at: dt.datetime | None = None,
                      job: dict | None = None, job_id: str | None = None) -> int:
        """Several commands (each for its devices) and the job row, in one transaction."""
        total = sum(len(i.udids) for i in items)
        if job is not None:
            job_id = job["id"]
        with self.tx() as s:
            if job is not None:
                s.execute(insert(Job).values(total=total, **job))
            if items:
                s.execute(insert(Command), [
                    {"uuid": i.command_uuid, "request_type": i.request_type, "body": i.body, "job_id": job_id,
                     "created_by": created_by, "created_at": now, "expires_at": expires_at,
                     "profile_id": i.profile_id, "encrypt": i.encrypt, "item_key": i.item_key,
                     "item_hash": i.item_hash} for i in items])
            rows = [{"udid": u, "command_uuid": i.command_uuid, "status": "queued", "priority": priority,
                     "queued_at": now, "sent_count": 0} for i in items for u in i.udids]
            for k in range(0, len(rows), INSERT_CHUNK):
                s.execute(insert(QueueItem), rows[k : k + INSERT_CHUNK])
        return total

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

    def cancel(self, udid: str | None, command_uuid: str, now: dt.datetime) -> int:
        """Cancel what is still queued (not yet sent) for one device or every device."""
        cond = [QueueItem.command_uuid == command_uuid, QueueItem.status.in_(("queued", "not_now"))]
        if udid:
            cond.append(QueueItem.udid == udid)
        with self.tx() as s:
            res = s.execute(update(QueueItem).where(and_(*cond)).values(status="cancelled", completed_at=now))
            return res.rowcount or 0
