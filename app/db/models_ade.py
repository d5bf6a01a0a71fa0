"""Tables for Apple School Manager (ADE) and device set-up ("ready out of the box").

Imported at the end of ``app.db.models`` so Alembic and the app see them.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db.models import TS, Base, BigId


class ADEConfig(Base):
    """The one server token (its secrets are never logged or returned) and the sync's progress."""

    __tablename__ = "ade_config"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)  # always 1
    consumer_key: Mapped[str] = mapped_column(String(255))
    consumer_secret: Mapped[str] = mapped_column(String(255))
    access_token: Mapped[str] = mapped_column(String(255))
    access_secret: Mapped[str] = mapped_column(String(255))
    access_token_expiry: Mapped[dt.datetime | None] = mapped_column(TS)
    server_name: Mapped[str | None] = mapped_column(String(255))
    server_uuid: Mapped[str | None] = mapped_column(String(64))
    org_name: Mapped[str | None] = mapped_column(String(255))
    uploaded_by: Mapped[str | None] = mapped_column(String(128))
    uploaded_at: Mapped[dt.datetime] = mapped_column(TS)
    #: where the device list stands: a fetch in progress, or the sync position
    cursor: Mapped[str | None] = mapped_column(Text)
    cursor_phase: Mapped[str | None] = mapped_column(String(8))  # fetch | sync
    fetched_at: Mapped[dt.datetime | None] = mapped_column(TS)  # last complete fetch
    synced_at: Mapped[dt.datetime | None] = mapped_column(TS)  # last successful run
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[dt.datetime | None] = mapped_column(TS)


class ADEDevice(Base):
    """A device Apple School Manager assigned to this MDM server, as Apple last reported it."""

    __tablename__ = "ade_devices"
    serial: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str | None] = mapped_column(String(128))
    description: Mapped[str | None] = mapped_column(String(255))
    color: Mapped[str | None] = mapped_column(String(64))
    device_family: Mapped[str | None] = mapped_column(String(32))
    os: Mapped[str | None] = mapped_column(String(32))
    asset_tag: Mapped[str | None] = mapped_column(String(128))
    profile_status: Mapped[str | None] = mapped_column(String(16))  # empty | assigned | pushed | removed
    profile_uuid: Mapped[str | None] = mapped_column(String(64))
    device_assigned_by: Mapped[str | None] = mapped_column(String(255))
    device_assigned_date: Mapped[str | None] = mapped_column(String(32))
    op_type: Mapped[str | None] = mapped_column(String(16))  # added | modified | deleted
    op_date: Mapped[str | None] = mapped_column(String(32))
    #: which school it belongs to (from the serial -> school rules) and as what
    school_id: Mapped[str | None] = mapped_column(ForeignKey("schools.id"), index=True)
    role: Mapped[str] = mapped_column(String(16), default="pupil", server_default="pupil")
    #: our last assignment attempt: profile and Apple's answer (SUCCESS | NOT_ACCESSIBLE | FAILED)
    assigned_profile_uuid: Mapped[str | None] = mapped_column(String(64))
    assign_status: Mapped[str | None] = mapped_column(String(32))
    assigned_at: Mapped[dt.datetime | None] = mapped_column(TS)
    enrolled_udid: Mapped[str | None] = mapped_column(String(64))
    enrolled_at: Mapped[dt.datetime | None] = mapped_column(TS)
    removed_at: Mapped[dt.datetime | None] = mapped_column(TS)  # Apple reported it deleted
    created_at: Mapped[dt.datetime] = mapped_column(TS)
    updated_at: Mapped[dt.datetime] = mapped_column(TS)


class ADEProfile(Base):
    """The ADE enrollment profile defined for a school (Apple's profiles are immutable: a change
    defines a new one and reassigns)."""

    __tablename__ = "ade_profiles"
    school_id: Mapped[str] = mapped_column(ForeignKey("schools.id"), primary_key=True)
    profile_uuid: Mapped[str] = mapped_column(String(64))
    content_hash: Mapped[str] = mapped_column(String(64))
    definition: Mapped[str] = mapped_column(Text)  # JSON sent to Apple
    defined_at: Mapped[dt.datetime] = mapped_column(TS)


class ADESchoolRule(Base):
    """Serial -> school: an exact serial (from a delivery note) or a serial prefix; exact wins,
    then the longest prefix."""

    __tablename__ = "ade_school_rules"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # serial | prefix
    pattern: Mapped[str] = mapped_column(String(64))
    school_id: Mapped[str] = mapped_column(ForeignKey("schools.id"))
    role: Mapped[str] = mapped_column(String(16), default="pupil", server_default="pupil")
    created_by: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(TS)
    __table_args__ = (UniqueConstraint("kind", "pattern", name="uq_ade_school_rules_kind_pattern"),)


SETUP_UNDER_WAY = ("configuring", "failed")  # DeviceSetup states whose results still matter


class DeviceSetup(Base):
    """A device's set-up after enrollment with AwaitingConfiguration: the blueprint job, then
    DeviceConfigured. ``error`` tells the support desk why it stopped."""

    __tablename__ = "device_setup"
    udid: Mapped[str] = mapped_column(ForeignKey("devices.udid"), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))  # configuring | finishing | configured | failed
    job_id: Mapped[str | None] = mapped_column(String(64))
    configured_command: Mapped[str | None] = mapped_column(String(128))  # CommandUUID of DeviceConfigured
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[dt.datetime] = mapped_column(TS)
    finished_at: Mapped[dt.datetime | None] = mapped_column(TS)
    __table_args__ = (Index("ix_device_setup_state", "state"),)
