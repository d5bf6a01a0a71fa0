"""Database schema (SQLAlchemy 2). Alembic migrations in ``migrations/`` create it."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger, Boolean, DateTime, ForeignKey, Index, Integer, LargeBinary, MetaData,
    String, Text, UniqueConstraint, text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# BIGINT autoincrement that also works on SQLite (where only INTEGER PRIMARY KEY autoincrements)
BigId = BigInteger().with_variant(Integer(), "sqlite")
TS = DateTime(timezone=True)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class School(Base):
    __tablename__ = "schools"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    enroll_token_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(TS)


class Device(Base):
    __tablename__ = "devices"
    udid: Mapped[str] = mapped_column(String(64), primary_key=True)
    serial: Mapped[str | None] = mapped_column(String(64), index=True)
    school_id: Mapped[str | None] = mapped_column(ForeignKey("schools.id"), index=True)
    role: Mapped[str] = mapped_column(String(16), default="pupil", server_default="pupil")
    enrollment_state: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    device_name: Mapped[str | None] = mapped_column(String(200))
    product_name: Mapped[str | None] = mapped_column(String(64))
    model_name: Mapped[str | None] = mapped_column(String(64))
    os_version: Mapped[str | None] = mapped_column(String(32))
    build_version: Mapped[str | None] = mapped_column(String(32))
    cert_fingerprint: Mapped[str | None] = mapped_column(String(64), unique=True)
    topic: Mapped[str | None] = mapped_column(String(255))
    push_token: Mapped[str | None] = mapped_column(String(512))
    push_magic: Mapped[str | None] = mapped_column(String(255))
    unlock_token: Mapped[bytes | None] = mapped_column(LargeBinary)
    token_invalid: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    awaiting_configuration: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    inventory: Mapped[str | None] = mapped_column(Text)  # JSON of DeviceInformation results
    inventory_at: Mapped[dt.datetime | None] = mapped_column(TS)
    enrolled_at: Mapped[dt.datetime | None] = mapped_column(TS)
    unenrolled_at: Mapped[dt.datetime | None] = mapped_column(TS)
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(TS, index=True)
    last_push_at: Mapped[dt.datetime | None] = mapped_column(TS)
    last_push_status: Mapped[str | None] = mapped_column(String(64))
    #: blueprint version last pushed to this device, and when its set-up was confirmed (DeviceConfigured)
    blueprint_version: Mapped[int | None] = mapped_column(Integer)
    configured_at: Mapped[dt.datetime | None] = mapped_column(TS)
    created_at: Mapped[dt.datetime] = mapped_column(TS)


class EnrollmentEvent(Base):
    __tablename__ = "enrollment_events"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    udid: Mapped[str] = mapped_column(String(64), index=True)
    event: Mapped[str] = mapped_column(String(32))
    at: Mapped[dt.datetime] = mapped_column(TS)
    detail: Mapped[str | None] = mapped_column(Text)


class Command(Base):
    """A command body, shared by every device it is queued for."""

    __tablename__ = "commands"
    uuid: Mapped[str] = mapped_column(String(128), primary_key=True)
    request_type: Mapped[str] = mapped_column(String(64))
    body: Mapped[bytes] = mapped_column(LargeBinary)  # the exact plist served
    profile_id: Mapped[int | None] = mapped_column(ForeignKey("profiles.id"))
    #: an InstallProfile whose PayloadContent is encrypted per device at delivery (carries secrets)
    encrypt: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    #: the blueprint item this command applies (see DeviceItem), recorded when acknowledged
    item_key: Mapped[str | None] = mapped_column(String(255))
    item_hash: Mapped[str | None] = mapped_column(String(64))
    job_id: Mapped[str | None] = mapped_column(String(64), index=True)
    created_by: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(TS)
    expires_at: Mapped[dt.datetime | None] = mapped_column(TS)


class QueueItem(Base):
    """One command for one device, with its fate."""

    __tablename__ = "command_queue"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    udid: Mapped[str] = mapped_column(ForeignKey("devices.udid"))
    command_uuid: Mapped[str] = mapped_column(ForeignKey("commands.uuid"))
    # queued | sent | not_now | acknowledged | error | format_error | cancelled | expired
    status: Mapped[str] = mapped_column(String(16), default="queued")
    priority: Mapped[int] = mapped_column(Integer, default=0)
    queued_at: Mapped[dt.datetime] = mapped_column(TS)
    sent_at: Mapped[dt.datetime | None] = mapped_column(TS)
    sent_count: Mapped[int] = mapped_column(Integer, default=0)
    completed_at: Mapped[dt.datetime | None] = mapped_column(TS)
    result: Mapped[bytes | None] = mapped_column(LargeBinary)  # raw report plist
    error_chain: Mapped[str | None] = mapped_column(Text)  # JSON
    __table_args__ = (
        UniqueConstraint("udid", "command_uuid", name="uq_command_queue_udid_command"),
        # "next command for this device": only pending rows are indexed
        Index(
            "ix_command_queue_pending", "udid", "priority", "id",
            postgresql_where=text("status IN ('queued','sent','not_now')"),
            sqlite_where=text("status IN ('queued','sent','not_now')"),
        ),
        Index("ix_command_queue_command", "command_uuid", "status"),
    )


class CommandEvent(Base):
    """Every state change of a queue item, timestamped."""

    __tablename__ = "command_events"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    udid: Mapped[str] = mapped_column(String(64))
    command_uuid: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    at: Mapped[dt.datetime] = mapped_column(TS)
    __table_args__ = (Index("ix_command_events_device", "udid", "id"),)


class PushRequest(Base):
    """Outbox of APNs pushes to send (coalesced per device)."""

    __tablename__ = "push_requests"
    udid: Mapped[str] = mapped_column(String(64), primary_key=True)
    requested_at: Mapped[dt.datetime] = mapped_column(TS)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[dt.datetime] = mapped_column(TS, index=True)


class Profile(Base):
    """A built profile version: plist and signed bytes cached once per version."""

    __tablename__ = "profiles"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    school_id: Mapped[str | None] = mapped_column(ForeignKey("schools.id"))
    role: Mapped[str | None] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(128))
    identifier: Mapped[str] = mapped_column(String(255), index=True)
    payload_uuid: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(64))
    plist: Mapped[bytes] = mapped_column(LargeBinary)
    signed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(TS)
    __table_args__ = (UniqueConstraint("identifier", "version", name="uq_profiles_identifier_version"),)


class BlueprintVersion(Base):
    """A school's merged blueprint as imported, one row per version."""

    __tablename__ = "blueprints"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    school_id: Mapped[str] = mapped_column(ForeignKey("schools.id"))
    version: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(64))
    merged: Mapped[str] = mapped_column(Text)  # JSON of the validated, merged blueprint
    sources: Mapped[str] = mapped_column(Text)  # JSON {file name: YAML text} it came from
    created_by: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(TS)
    __table_args__ = (UniqueConstraint("school_id", "version", name="uq_blueprints_school_version"),)


class DeviceApp(Base):
    """Apps on a device, from InstalledApplicationList or acknowledged InstallApplication."""

    __tablename__ = "device_apps"
    udid: Mapped[str] = mapped_column(ForeignKey("devices.udid"), primary_key=True)
    identifier: Mapped[str] = mapped_column(String(255), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(255))
    version: Mapped[str | None] = mapped_column(String(64))
    managed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    source: Mapped[str] = mapped_column(String(32))
    updated_at: Mapped[dt.datetime] = mapped_column(TS)


class DeviceItem(Base):
    """A blueprint item (an app install or removal, a Settings command) acknowledged by a device,
    with the hash of the command that did it: a push re-sends only what differs."""

    __tablename__ = "device_items"
    udid: Mapped[str] = mapped_column(ForeignKey("devices.udid"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)  # app:<key> | settings:school | settings:name
    content_hash: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(String(255))  # e.g. the bundle id an app install reported
    updated_at: Mapped[dt.datetime] = mapped_column(TS)


class DeviceProfile(Base):
    """What a device has installed, as far as we know (acknowledged or listed)."""

    __tablename__ = "device_profiles"
    udid: Mapped[str] = mapped_column(ForeignKey("devices.udid"), primary_key=True)
    identifier: Mapped[str] = mapped_column(String(255), primary_key=True)
    content_hash: Mapped[str | None] = mapped_column(String(64))
    payload_uuid: Mapped[str | None] = mapped_column(String(64))
    display_name: Mapped[str | None] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(String(16))  # acknowledged | ProfileList
    updated_at: Mapped[dt.datetime] = mapped_column(TS)


class ScepChallenge(Base):
    __tablename__ = "scep_challenges"
    challenge_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    school_id: Mapped[str] = mapped_column(ForeignKey("schools.id"))
    serial: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(TS)
    expires_at: Mapped[dt.datetime] = mapped_column(TS)
    used_at: Mapped[dt.datetime | None] = mapped_column(TS)


class IssuedCertificate(Base):
    __tablename__ = "issued_certificates"
    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    serial_number: Mapped[str] = mapped_column(String(64), unique=True)
    subject: Mapped[str] = mapped_column(String(512))
    school_id: Mapped[str | None] = mapped_column(String(64))
    issued_at: Mapped[dt.datetime] = mapped_column(TS)
    not_after: Mapped[dt.datetime] = mapped_column(TS)
    udid: Mapped[str | None] = mapped_column(String(64), index=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(TS)
    revoked_reason: Mapped[str | None] = mapped_column(String(64))
    cert_der: Mapped[bytes | None] = mapped_column(LargeBinary)


class ApiToken(Base):
    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    schools: Mapped[str | None] = mapped_column(Text)  # JSON list; null = every school
    created_at: Mapped[dt.datetime] = mapped_column(TS)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(TS)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(TS)


class Job(Base):
    """A bulk request (one command or profile push to many devices) with live counts."""

    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # command | profile | blueprint
    request_type: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(255))
    school_id: Mapped[str | None] = mapped_column(String(64), index=True)
    created_by: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(TS, index=True)
    expires_at: Mapped[dt.datetime | None] = mapped_column(TS)
    total: Mapped[int] = mapped_column(Integer, default=0)
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(TS)
    finished_at: Mapped[dt.datetime | None] = mapped_column(TS)


class Webhook(Base):
    __tablename__ = "webhooks"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    url: Mapped[str] = mapped_column(String(1024))
    secret: Mapped[str] = mapped_column(String(128))  # HMAC key; never returned by the API
    events: Mapped[str] = mapped_column(Text)  # JSON list of event names, ["*"] for all
    created_at: Mapped[dt.datetime] = mapped_column(TS)
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))


class WebhookDelivery(Base):
    """Outbox of webhook events, retried with backoff until delivered or given up."""

    __tablename__ = "webhook_deliveries"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(TS)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(TS)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(TS)
    last_error: Mapped[str | None] = mapped_column(String(512))
    __table_args__ = (
        Index("ix_webhook_deliveries_due", "next_attempt_at",
              postgresql_where=text("delivered_at IS NULL AND next_attempt_at IS NOT NULL"),
              sqlite_where=text("delivered_at IS NULL AND next_attempt_at IS NOT NULL")),
    )


class AuditEntry(Base):
    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(TS, index=True)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(255))
    details: Mapped[str | None] = mapped_column(Text)


from app.db import models_roster as _roster  # noqa: E402,F401  (roster, waves, loans tables)
from app.db import models_ade  # noqa: E402,F401  (ADE tables: registered on Base.metadata)
from app.db import models_identity  # noqa: E402,F401  (issued identities: registered on Base.metadata)
