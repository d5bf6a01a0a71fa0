"""Retention: prune old command history so the queue stays fast with millions of rows.

Finished queue rows (acknowledged, error, cancelled, expired, ...) and their
state changes older than ``command_retention_days`` are deleted in batches,
then command bodies no queue row refers to any more; delivered webhook
deliveries after ``webhook_retention_days``. On PostgreSQL an advisory lock
makes one instance prune at a time.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import and_, delete, exists, select

from app.db.models import Command, CommandEvent, Job, QueueItem, WebhookDelivery
from app.services.clock import Clock, utcnow
from app.services.scheduler import singleton
from app.storage.sql_base import SQLStore

log = logging.getLogger("schoolmdm.retention")
FINISHED = ("acknowledged", "error", "format_error", "cancelled", "expired", "retried")


class Retention(SQLStore):
    def __init__(self, sessions, *, command_days: int, webhook_days: int = 30, batch: int = 10_000,
                 clock: Clock = utcnow) -> None:
        super().__init__(sessions)
        self.command_days = command_days
        self.webhook_days = webhook_days
        self.batch = batch
        self.clock = clock

    def run_once(self) -> dict:
        """Prune one round (bounded batches); returns what was deleted."""
        if self.command_days <= 0:
            return {}
        with singleton(self.sessions.kw["bind"], "retention") as mine:
            return self._prune() if mine else {}

    def _prune(self) -> dict:
        now = self.clock()
        cutoff = now - dt.timedelta(days=self.command_days)
        out = {"queue": 0, "events": 0, "commands": 0, "jobs": 0, "webhooks": 0}
        while True:
            with self.tx() as s:
                ids = list(s.execute(select(QueueItem.id).where(QueueItem.status.in_(FINISHED),
                                                                QueueItem.completed_at < cutoff)
                                     .limit(self.batch)).scalars())
                if ids:
                    out["queue"] += s.execute(delete(QueueItem).where(QueueItem.id.in_(ids))).rowcount or 0
                out["events"] += s.execute(delete(CommandEvent).where(CommandEvent.id.in_(
                    select(CommandEvent.id).where(CommandEvent.at < cutoff).limit(self.batch)))).rowcount or 0
            if len(ids) < self.batch:
                break
        with self.tx() as s:
            orphan = ~exists().where(QueueItem.command_uuid == Command.uuid)
            old_cmds = select(Command.uuid).where(Command.created_at < cutoff, orphan).limit(self.batch)
            out["commands"] = s.execute(delete(Command).where(Command.uuid.in_(old_cmds))).rowcount or 0
            no_cmds = ~exists().where(Command.job_id == Job.id)
            out["jobs"] = s.execute(delete(Job).where(and_(Job.created_at < cutoff, no_cmds))).rowcount or 0
            hook_cut = now - dt.timedelta(days=self.webhook_days)
            out["webhooks"] = s.execute(delete(WebhookDelivery).where(
                WebhookDelivery.delivered_at.is_not(None), WebhookDelivery.delivered_at < hook_cut)).rowcount or 0
        if any(out.values()):
            log.info("retention pruned %s", out)
        return out
