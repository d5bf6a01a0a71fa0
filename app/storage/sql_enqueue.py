"""SQL implementation of the enqueue side of CommandQueue: commands in, set-based."""

from __future__ import annotations

import datetime as dt
from typing import Sequence

from sqlalchemy import and_, delete, insert, literal, select, update

from app.db.models import Command, Job, QueueItem
from app.storage.interfaces import DeviceSelection, QueuedCommand
from app.storage.sql_base import SQLStore
from app.storage.sql_push import request_selected
from app.storage.sql_selection import selected_udids

INSERT_CHUNK = 5000


class SQLEnqueue(SQLStore):
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

    def enqueue_selected(self, selection: DeviceSelection, *, command_uuid: str, request_type: str, body: bytes,
                         now: dt.datetime, priority: int = 0, job_id: str | None = None,
                         created_by: str | None = None, expires_at: dt.datetime | None = None,
                         profile_id: int | None = None, job: dict | None = None, encrypt: bool = False,
                         push: bool = True) -> int:
        """One command for the devices ``selection`` names, chosen by the database: the command, one
        queue row per device (``INSERT … SELECT``), the job with that total and the devices' push
        requests, in one transaction. No devices and no job: nothing is written."""
        if job is not None:
            job_id = job["id"]
        with self.tx() as s:
            s.execute(insert(Command).values(
                uuid=command_uuid, request_type=request_type, body=body, job_id=job_id, created_by=created_by,
                created_at=now, expires_at=expires_at, profile_id=profile_id, encrypt=encrypt))
            total = 0
            for udids in selected_udids(selection):
                rows = udids.add_columns(literal(command_uuid), literal("queued"), literal(priority),
                                         literal(now, QueueItem.queued_at.type), literal(0))
                ins = insert(QueueItem).from_select(
                    ["udid", "command_uuid", "status", "priority", "queued_at", "sent_count"], rows)
                # an INSERT's rowcount is kept only when asked for (psycopg)
                total += s.execute(ins.execution_options(preserve_rowcount=True)).rowcount
            if job is not None:
                s.execute(insert(Job).values(total=total, **job))
            elif not total:
                s.execute(delete(Command).where(Command.uuid == command_uuid))
            if total and push:
                request_selected(s, self.dialect, select(QueueItem.udid).where(QueueItem.command_uuid == command_uuid),
                                 now)
        return total

    def cancel(self, udid: str | None, command_uuid: str, now: dt.datetime) -> int:
        """Cancel what is still queued (not yet sent) for one device or every device."""
        cond = [QueueItem.command_uuid == command_uuid, QueueItem.status.in_(("queued", "not_now"))]
        if udid:
            cond.append(QueueItem.udid == udid)
        with self.tx() as s:
            res = s.execute(update(QueueItem).where(and_(*cond)).values(status="cancelled", completed_at=now))
            return res.rowcount or 0
