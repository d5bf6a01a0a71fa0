"""Small storage interfaces, each named for one ability.

Services depend on these Protocols; ``app.storage.sql`` implements them on
SQLAlchemy (SQLite and PostgreSQL). The contract suite in
``tests/test_storage_contract.py`` runs against every backend.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Callable, Iterable, Protocol, Sequence

from mdm.checkin import Authenticate, TokenUpdate
from mdm.commands import Report


@dataclass(frozen=True)
class DeviceAuth:
    udid: str
    cert_fingerprint: str | None
    enrollment_state: str
    #: commands wait for it (queued, sent or put off), as read with the rest; None: not read
    has_pending: bool | None = None
    #: its set-up (blueprint on enrollment) is configuring or failed, as read with the rest
    setup_under_way: bool | None = None


@dataclass(frozen=True)
class NextCommand:
    command_uuid: str
    request_type: str
    body: bytes
    profile_id: int | None = None
    encrypt: bool = False  # encrypt the profile for this device before sending


@dataclass(frozen=True)
class QueuedCommand:
    """One command body for a set of devices (one element of a batch enqueue)."""

    command_uuid: str
    request_type: str
    body: bytes
    udids: Sequence[str]
    profile_id: int | None = None
    encrypt: bool = False
    item_key: str | None = None
    item_hash: str | None = None


@dataclass(frozen=True)
class DeviceSelection:
    """Which enrolled devices a set-based enqueue is for, chosen by the database.

    ``udids`` (when not None) limits to those devices, else ``school_id`` and ``role`` (when set)
    to a school and a role; ``lacking`` = (profile identifier, content hash) leaves out the devices
    that already have that exact profile. Nothing set: every enrolled device.
    """

    udids: tuple[str, ...] | None = None
    school_id: str | None = None
    role: str | None = None
    lacking: tuple[str, str] | None = None


@dataclass(frozen=True)
class JoinedWrites:
    """What a caller's ``on_recorded`` writes inside the report's transaction, said as data, so a
    queue can write it in the statement that records the report instead (``report_and_next``):
    for an acknowledged InstallProfile (not a blueprint item) the profile version now on the
    device; for an acknowledged DeviceInformation its answer, ``device_information``."""

    device_information: dict | None = None


@dataclass(frozen=True)
class ReportOutcome:
    """What recording a report did (for webhooks and metrics)."""

    command_uuid: str | None
    request_type: str | None
    status: str | None  # the new queue status, None for Idle
    duplicate: bool = False
    item_key: str | None = None
    item_hash: str | None = None
    result_recorded: bool = False  # what the result tells (JoinedWrites) was written with the report


class CheckinStore(Protocol):
    def device_auth(self, udid: str) -> DeviceAuth | None: ...
    def fingerprint_owner(self, fingerprint: str) -> str | None: ...
    def authenticate(self, msg: Authenticate, fingerprint: str, school_id: str | None, now: dt.datetime) -> None: ...
    def token_update(self, msg: TokenUpdate, now: dt.datetime) -> bool: ...
    def checkout(self, udid: str, now: dt.datetime) -> None: ...


class CommandQueue(Protocol):
    def enqueue(self, *, command_uuid: str, request_type: str, body: bytes, udids: Sequence[str],
                now: dt.datetime, priority: int = 0, job_id: str | None = None,
                created_by: str | None = None, expires_at: dt.datetime | None = None,
                profile_id: int | None = None, job: dict | None = None) -> int: ...
    def enqueue_batch(self, items: Sequence[QueuedCommand], *, now: dt.datetime, priority: int = 0,
                      created_by: str | None = None, expires_at: dt.datetime | None = None,
                      job: dict | None = None) -> int: ...
    def enqueue_selected(self, selection: DeviceSelection, *, command_uuid: str, request_type: str, body: bytes,
                         now: dt.datetime, priority: int = 0, job_id: str | None = None,
                         created_by: str | None = None, expires_at: dt.datetime | None = None,
                         profile_id: int | None = None, job: dict | None = None, encrypt: bool = False,
                         push: bool = True) -> int: ...
    def report_and_next(self, udid: str, report: Report, now: dt.datetime, *,
                        pending: bool | None = None,
                        on_recorded: Callable[[ReportOutcome], None] | None = None,
                        joined: JoinedWrites | None = None,
                        ) -> tuple[ReportOutcome, NextCommand | None]: ...
    def cancel(self, udid: str | None, command_uuid: str, now: dt.datetime) -> int: ...


class PushQueue(Protocol):
    def request(self, udids: Iterable[str], now: dt.datetime) -> int: ...
    def claim(self, limit: int, now: dt.datetime) -> list[tuple[str, bytes, str, str]]: ...
    def record_results(self, results: Sequence[tuple[str, bool, bool, str]], now: dt.datetime) -> None: ...


class ChallengeStore(Protocol):
    def create(self, challenge_hash: str, school_id: str, serial: str | None, now: dt.datetime, expires_at: dt.datetime) -> None: ...
    def consume(self, challenge_hash: str, now: dt.datetime) -> tuple[str, str | None] | None: ...


class CertificateStore(Protocol):
    def record_issued(self, *, fingerprint: str, serial_number: str, subject: str, school_id: str | None,
                      issued_at: dt.datetime, not_after: dt.datetime, udid: str | None = None,
                      cert_der: bytes | None = None) -> None: ...
    def lookup(self, fingerprint: str) -> dict | None: ...
    def revoke_for_device(self, udid: str, reason: str, now: dt.datetime) -> int: ...
