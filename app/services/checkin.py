"""Check-in: Authenticate, TokenUpdate, CheckOut."""

from __future__ import annotations

import logging

from app.services.clock import Clock, utcnow
from app.storage.interfaces import CertificateStore, CheckinStore
from mdm.checkin import Authenticate, CheckinMessage, CheckOut, TokenUpdate
from mdm.errors import UnknownMessageType

log = logging.getLogger("schoolmdm.checkin")


class CheckinService:
    """Applies check-in messages. ``handle`` returns the reply body and whether this
    message completed an enrollment (wrappers use it for events and ADE set-up)."""

    def __init__(self, store: CheckinStore, certs: CertificateStore, *, clock: Clock = utcnow) -> None:
        self.store = store
        self.certs = certs
        self.clock = clock

    def handle(self, msg: CheckinMessage, fingerprint: str) -> bytes:
        return self.process(msg, fingerprint)[0]

    def process(self, msg: CheckinMessage, fingerprint: str) -> tuple[bytes, bool]:
        """(reply body, True when this TokenUpdate completed an enrollment)."""
        first = False
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
        elif isinstance(msg, CheckOut):
            self.store.checkout(msg.udid, now)
            self.certs.revoke_for_device(msg.udid, "checked out", now)
            log.info("CheckOut udid=%s", msg.udid)
        else:  # parse_checkin only yields the types above
            raise UnknownMessageType(f"unhandled message {msg.message_type}")
        return b"", first
