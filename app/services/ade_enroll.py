"""ADE enrollment: a device in Setup Assistant POSTs its signed MachineInfo to its school's
ADE URL (``/enroll/ade/{school}``) and gets the enrollment profile back.

The CMS signature must be intact; with ``SCHOOLMDM_ADE_DEVICE_CA_FILE`` set the signer must
also chain to that CA (Apple's device CA in production). The serial must be an ADE device
this server has assigned to that school; anything else is refused (403, with the reason).
"""

from __future__ import annotations

import logging

from cryptography import x509

from app.services.clock import Clock, utcnow
from app.services.enrollment import EnrollmentService
from app.storage.sql_ade import SQLADEStore
from mdm.ade.machineinfo import MAX_BYTES, MachineInfo, parse_machine_info
from mdm.errors import EnrollmentError, LimitExceeded, ParseError
from profiles.signing import unsign_profile, verify_profile

log = logging.getLogger("schoolmdm.ade")


class ADEEnrollment:
    def __init__(self, enrollment: EnrollmentService, store: SQLADEStore, *,
                 device_ca: x509.Certificate | None = None, clock: Clock = utcnow) -> None:
        self.enrollment = enrollment
        self.store = store
        self.device_ca = device_ca
        self.clock = clock

    def machine_info(self, body: bytes) -> MachineInfo:
        if len(body) > MAX_BYTES:
            raise LimitExceeded(f"MachineInfo larger than {MAX_BYTES} bytes")
        try:
            if self.device_ca is not None:
                content = verify_profile(body, self.device_ca, clock=self.clock)
            else:
                content, _ = unsign_profile(body)
        except ParseError as e:
            raise EnrollmentError(f"MachineInfo signature not accepted: {e.message}") from None
        return parse_machine_info(content)

    def profile(self, school_id: str, body: bytes) -> bytes:
        info = self.machine_info(body)
        try:
            out = self.enrollment.ade_profile(school_id, info.serial, self.store)
        except EnrollmentError as e:
            log.info("ADE enrollment refused serial=%s school=%s: %s", info.serial, school_id, e.message)
            raise
        self.store.mark_enrolled(info.serial, info.udid, self.clock())
        log.info("ADE enrollment profile for serial=%s udid=%s school=%s", info.serial, info.udid, school_id)
        return out
