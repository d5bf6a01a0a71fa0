"""Connect (the ServerURL): record a report, answer with the next command."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from app.services.clock import Clock, utcnow
from app.storage.interfaces import CommandQueue, DeviceAuth, JoinedWrites, NextCommand, ReportOutcome
from mdm import plist
from mdm.commands import Report

log = logging.getLogger("schoolmdm.connect")


@dataclass(frozen=True)
class ConnectResult:
    outcome: ReportOutcome
    next: NextCommand | None

    @property
    def body(self) -> bytes:
        return self.next.body if self.next else b""

    @property
    def new_result(self) -> bool:
        """A report recorded now (not Idle, not a repeat)."""
        return bool(self.outcome.command_uuid) and not self.outcome.duplicate


class ConnectService:
    def __init__(self, queue: CommandQueue, results, *, clock: Clock = utcnow) -> None:
        self.queue = queue
        self.results = results  # ResultHandler: applies acknowledged results to inventory
        self.clock = clock

    def process(self, report: Report, *, device: DeviceAuth | None = None, **_wrappers) -> ConnectResult:
        """``device``: the device's record as the authenticator read it in this request (whether
        commands wait for it saves the queue a read); what else the route knows (the verified
        ``signer``) is for the wrappers that use it."""
        now = self.clock()
        results = self.results
        applied = False

        def in_report_tx(outcome: ReportOutcome) -> None:
            nonlocal applied
            if outcome.status == "acknowledged" and results.joins(outcome):
                results.apply(report.udid, outcome, report, now)
                applied = True

        outcome, nxt = self.queue.report_and_next(report.udid, report, now,
                                                  pending=device.has_pending if device else None,
                                                  on_recorded=in_report_tx,
                                                  joined=results.joined_writes(report))
        applied = applied or outcome.result_recorded
        if outcome.command_uuid and not outcome.duplicate and outcome.status == "acknowledged" and not applied:
            results.apply(report.udid, outcome, report, now)  # after the report's transaction
        return ConnectResult(outcome, nxt)

    def handle(self, report: Report, **known) -> bytes:
        return self.process(report, **known).body


class ResultHandler:
    """Turns acknowledged results into what we know about the device."""

    #: results whose inventory writes join the transaction that records the report (the stores'
    #: raw statements): the result and what it tells us commit together, with one commit less
    #: per command round trip. The rest are applied after that transaction, on the ORM.
    JOINS = frozenset({"DeviceInformation", "InstallProfile"})

    def __init__(self, inventory) -> None:
        self.inventory = inventory

    def joins(self, outcome: ReportOutcome) -> bool:
        return outcome.request_type in self.JOINS and not outcome.item_key

    def joined_writes(self, report: Report) -> JoinedWrites:
        """What ``apply`` writes in the report's transaction (``joins``), as data for a queue that
        writes it in the statement recording the report (``CommandQueue.report_and_next``)."""
        info = report.plist.get("QueryResponses")
        return JoinedWrites(device_information=info if isinstance(info, dict) else None)

    def apply(self, udid: str, outcome: ReportOutcome, report: Report, now) -> None:
        request_type = outcome.request_type
        result = report.result()
        if outcome.item_key:
            ident = result.get("Identifier") if request_type == "InstallApplication" else None
            self.inventory.item_applied(udid, outcome.item_key, outcome.item_hash, now,
                                        ident if isinstance(ident, str) else None)
        if request_type == "DeviceInformation":
            info = result.get("QueryResponses")
            if isinstance(info, dict):
                self.inventory.save_device_information(udid, info, now)
        elif request_type == "ProfileList":
            items = result.get("ProfileList")
            if isinstance(items, list):
                self.inventory.replace_profile_list(udid, [i for i in items if isinstance(i, dict)], now)
        elif request_type == "InstallProfile":
            self.inventory.profile_acknowledged(udid, report.command_uuid, now)
        elif request_type == "InstalledApplicationList":
            items = result.get("InstalledApplicationList")
            if isinstance(items, list):
                self.inventory.replace_apps(udid, [i for i in items if isinstance(i, dict)], now)
        elif request_type in ("RemoveProfile", "InstallApplication", "RemoveApplication"):
            # reports do not echo the command: read the identifier from what we sent
            ident = result.get("Identifier") if request_type == "InstallApplication" else None
            if not isinstance(ident, str):
                body = self.inventory.command_body(report.command_uuid)
                ident = plist.loads_dict(body).get("Command", {}).get("Identifier") if body else None
            if not isinstance(ident, str):
                return
            if request_type == "RemoveProfile":
                self.inventory.profile_removed(udid, ident)
            elif request_type == "InstallApplication":
                self.inventory.app_installed(udid, ident, now)
            else:
                self.inventory.app_removed(udid, ident)
