"""Prometheus metrics (served at /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.checkins = Counter("schoolmdm_checkins_total", "Check-in messages by type and outcome",
                                ["message_type", "outcome"], registry=self.registry)
        self.reports = Counter("schoolmdm_command_reports_total", "Command reports by status",
                               ["status"], registry=self.registry)
        self.commands_sent = Counter("schoolmdm_commands_sent_total", "Commands handed to devices",
                                     ["request_type"], registry=self.registry)
        self.queued = Counter("schoolmdm_commands_queued_total", "Commands queued (per device)",
                              ["request_type"], registry=self.registry)
        self.pushes = Counter("schoolmdm_pushes_total", "APNs push results", ["result"], registry=self.registry)
        self.latency = Histogram("schoolmdm_device_request_seconds", "Device request latency",
                                 ["endpoint"], registry=self.registry,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))

    def push(self, ok: bool, unregistered: bool) -> None:
        self.pushes.labels("ok" if ok else "unregistered" if unregistered else "failed").inc()
