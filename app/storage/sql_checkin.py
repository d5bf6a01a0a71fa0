"""SQL implementation of CheckinStore."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import bindparam, exists, insert, select, update

from app.db.models import Device, EnrollmentEvent, IssuedCertificate, QueueItem
from app.db.models_ade import SETUP_UNDER_WAY, DeviceSetup
from app.storage.interfaces import DeviceAuth
from app.storage.sql_base import SQLStore, one_of
from app.storage.sql_raw import RawSelect
from mdm.checkin import Authenticate, TokenUpdate
from mdm.errors import NotEnrolled

PENDING = ("queued", "sent", "not_now")
# built once: every device request runs it
# (the status condition is the pending index's predicate, so the EXISTS is an index probe)
# (run without SQLAlchemy's execution layers: RawSelect)
_AUTH = RawSelect(select(
    Device.cert_fingerprint, Device.enrollment_state,
    exists().where(QueueItem.udid == Device.udid, one_of(QueueItem.status, PENDING)),
    exists().where(DeviceSetup.udid == Device.udid, one_of(DeviceSetup.state, SETUP_UNDER_WAY)),
).where(Device.udid == bindparam("udid")))


class SQLCheckinStore(SQLStore):
    def device_auth(self, udid: str) -> DeviceAuth | None:
        row = _AUTH.first(self.engine, {"udid": udid})
        return DeviceAuth(udid, row[0], row[1], bool(row[2]), bool(row[3])) if row else None

    def fingerprint_owner(self, fingerprint: str) -> str | None:
        with self.tx(readonly=True) as s:
            return s.execute(select(Device.udid).where(Device.cert_fingerprint == fingerprint)).scalar()

    def authenticate(self, msg: Authenticate, fingerprint: str, school_id: str | None, now: dt.datetime) -> None:
        fields = dict(
            serial=msg.serial_number, product_name=msg.product_name, model_name=msg.model_name,
            os_version=msg.os_version, build_version=msg.build_version, device_name=msg.device_name,
            cert_fingerprint=fingerprint, topic=msg.topic, enrollment_state="authenticated",
            last_seen_at=now, token_invalid=False,
        )
        with self.tx() as s:
            # a certificate belongs to one device: unbind it from a stale row of the same device only
            existing = s.get(Device, msg.udid, with_for_update=True)
            if existing is None:
                s.add(Device(udid=msg.udid, school_id=school_id, created_at=now, **fields))
            else:
                for k, v in fields.items():
                    setattr(existing, k, v)
                if school_id:
                    existing.school_id = school_id
                existing.push_token = None
                existing.push_magic = None
            # a new enrollment starts with an empty queue (history is kept as cancelled)
            s.execute(
                update(QueueItem)
                .where(QueueItem.udid == msg.udid, QueueItem.status.in_(PENDING))
                .values(status="cancelled", completed_at=now)
            )
            s.execute(update(IssuedCertificate).where(IssuedCertificate.fingerprint == fingerprint)
                      .values(udid=msg.udid))
            s.execute(insert(EnrollmentEvent).values(udid=msg.udid, event="Authenticate", at=now,
                                                     detail=msg.serial_number))

    def token_update(self, msg: TokenUpdate, now: dt.datetime) -> bool:
        """Store push credentials; returns True when this completed an enrollment."""
        with self.tx() as s:
            dev = s.get(Device, msg.udid, with_for_update=True)
            if dev is None or dev.enrollment_state not in ("authenticated", "enrolled"):
                raise NotEnrolled("TokenUpdate before Authenticate")
            first = dev.enrollment_state != "enrolled"
            dev.push_token = msg.token.hex()
            dev.push_magic = msg.push_magic
            dev.topic = msg.topic
            if msg.unlock_token is not None:
                dev.unlock_token = msg.unlock_token
            dev.token_invalid = False
            dev.awaiting_configuration = msg.awaiting_configuration
            dev.enrollment_state = "enrolled"
            dev.last_seen_at = now
            if first:
                dev.enrolled_at = now
                dev.unenrolled_at = None
            s.execute(insert(EnrollmentEvent).values(udid=msg.udid, event="TokenUpdate", at=now,
                                                     detail="enrolled" if first else "token refreshed"))
        return first

    def checkout(self, udid: str, now: dt.datetime, event: str = "CheckOut") -> None:
        """The device left management (CheckOut, or an acknowledged EraseDevice: ``event``)."""
        with self.tx() as s:
            dev = s.get(Device, udid, with_for_update=True)
            if dev is None:
                raise NotEnrolled("CheckOut from an unknown device")
            dev.enrollment_state = "unenrolled"
            dev.unenrolled_at = now
            dev.last_seen_at = now
            dev.push_token = None
            dev.push_magic = None
            dev.cert_fingerprint = None
            s.execute(
                update(QueueItem)
                .where(QueueItem.udid == udid, QueueItem.status.in_(PENDING))
                .values(status="cancelled", completed_at=now)
            )
            s.execute(insert(EnrollmentEvent).values(udid=udid, event=event, at=now))
