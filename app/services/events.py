"""Webhook events, added by wrapping the check-in and connect services.

Events: ``device.enrolled``, ``device.checked_out``, ``command.completed``
(a final result: acknowledged, error, format error) and ``job.completed``.
They go into the webhook outbox in the database; the webhook worker delivers them.
"""

from __future__ import annotations

from app.services.clock import Clock, utcnow
from mdm.checkin import CheckOut, CheckinMessage
from mdm.commands import Report

FINAL_STATUSES = ("acknowledged", "error", "format_error")


class EventingCheckin:
    def __init__(self, inner, hooks, *, clock: Clock = utcnow) -> None:
        self.inner = inner
        self.hooks = hooks
        self.clock = clock

    def process(self, msg: CheckinMessage, fingerprint: str) -> tuple[bytes, bool]:
        body, first = self.inner.process(msg, fingerprint)
        events = []
        if first and self.hooks.wants("device.enrolled"):
            events.append(("device.enrolled", {"udid": msg.udid, "awaiting_configuration":
                                               getattr(msg, "awaiting_configuration", False)}))
        if isinstance(msg, CheckOut) and self.hooks.wants("device.checked_out"):
            events.append(("device.checked_out", {"udid": msg.udid}))
        if events:
            self.hooks.enqueue(events, self.clock())
        return body, first

    def handle(self, msg: CheckinMessage, fingerprint: str) -> bytes:
        return self.process(msg, fingerprint)[0]


class EventingConnect:
    def __init__(self, inner, hooks, jobs, *, clock: Clock = utcnow) -> None:
        self.inner = inner
        self.hooks = hooks
        self.jobs = jobs
        self.clock = clock

    def process(self, report: Report, **known):
        res = self.inner.process(report, **known)
        o = res.outcome
        if res.new_result and o.status in FINAL_STATUSES:
            events = []
            if self.hooks.wants("command.completed"):
                events.append(("command.completed", {
                    "udid": report.udid, "command_uuid": o.command_uuid, "request_type": o.request_type,
                    "status": o.status, "error_chain": report.error_chain}))
            if self.hooks.wants("job.completed"):
                job = self.jobs.finish_if_done(o.command_uuid)
                if job is not None:
                    events.append(("job.completed", job))
            if events:
                self.hooks.enqueue(events, self.clock())
        return res

    def handle(self, report: Report, **known) -> bytes:
        return self.process(report, **known).body
