"""Check-in: Authenticate, TokenUpdate, CheckOut."""

from __future__ import annotations

import logging

from app.services.clock import Clock, utcnow
from app.storage.interfaces import CertificateStore, CheckinStore, PushQueue
from mdm.checkin import Authenticate, CheckinMessage, CheckOut, TokenUpdate
from mdm.errors import UnknownMessageType

log = logging.getLogger("schoolmdm.checkin")


class CheckinService:
    def __init__(self, store: CheckinStore, certs: CertificateStore, *, clock: Clock = utcnow,
                 on_enrolled=None, on_checkout=None) -> None:
        self.store = store
        self.certs = certs
        self.clock = clock
        self.on_enrolled = on_enrolled or (lambda udid, awaiting: None)
        self.on_checkout = on_checkout or (lambda udid: None)

    def handle(self, msg: CheckinMessage, fingerprint: str) -> bytes:
        now = self.clock()
        if isinstance(msg, Authenticate):
            cert = self.certs.lookup(fingerprint)
            school_id = cert["school_id"] if cert else None
            self.store.authenticate(msg, fingerprint, school_id, now)
            log.info("Authenticate udid=%s serial=%s school=%s", msg.udid, msg.serial_number, school_id)
        elif isinstance(msg, TokenUpdate):
            first = self.store.token_update(msg, now)
            if first:
                log.info("enrolled udid=%s awaiting_configuration=%s", msg.udid, msg.awaiting_configuration)
                self.on_enrolled(msg.udid, msg.awaiting_configuration)
        elif isinstance(msg, CheckOut):
            self.store.checkout(msg.udid, now)
            self.certs.revoke_for_device(msg.udid, "checked out", now)
            log.info("CheckOut udid=%s", msg.udid)
            self.on_checkout(msg.udid)
        else:  # parse_checkin only yields the types above
            raise UnknownMessageType(f"unhandled message {msg.message_type}")
        return b""
