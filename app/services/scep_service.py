"""The SCEP service: checks challenges and renewals, issues device identities."""

from __future__ import annotations

import logging

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from app.services.clock import Clock, utcnow
from app.services.enrollment import hash_secret
from mdm import pki as pkilib
from mdm.errors import ParseError
from mdm.scep import FailInfo, ScepRefused, ScepRequest

log = logging.getLogger("schoolmdm.scep")
MAX_SUBJECT = 512  # issued_certificates.subject


class DeviceScepService:
    def __init__(self, pki, challenges, certs, inventory, *, days: int = 365, clock: Clock = utcnow) -> None:
        self._pki = pki
        self.challenges = challenges
        self.certs = certs
        self.inventory = inventory
        self.days = days
        self.clock = clock

    def ca(self):
        return self._pki.ca

    def issue(self, request: ScepRequest) -> x509.Certificate:
        now = self.clock()
        if request.csr is None:
            raise ScepRefused("no certification request", FailInfo.badRequest)
        self._check_csr(request.csr)  # before the challenge is spent: a refusal changes nothing
        old_fp = None
        if request.message_type == "RenewalReq":
            old_fp = pkilib.fingerprint(request.signer_cert)
            old = self.certs.lookup(old_fp)
            if old is None or old["revoked_at"] is not None:
                raise ScepRefused("renewal must be signed by a current device certificate", FailInfo.badCertId)
            if old["not_after"] <= now:
                raise ScepRefused("the certificate to renew has expired", FailInfo.badTime)
            school_id = old["school_id"]
        elif request.message_type == "PKCSReq":
            if not request.challenge:
                raise ScepRefused("challenge password missing", FailInfo.badRequest)
            used = self.challenges.consume(hash_secret(request.challenge), now)
            if used is None:
                log.warning("SCEP challenge refused (unknown, expired or replayed) tx=%s", request.transaction_id)
                raise ScepRefused("challenge is unknown, expired or already used", FailInfo.badRequest)
            school_id, _serial = used
        else:
            raise ScepRefused(f"{request.message_type} is not supported", FailInfo.badRequest)
        try:
            cert = pkilib.sign_csr(self._pki.ca, request.csr, days=self.days)
        except Exception as e:  # a CSR we cannot sign (weak key, bad signature)
            raise ScepRefused(f"certification request refused: {e}", FailInfo.badRequest) from None
        fp = pkilib.fingerprint(cert)
        self.certs.record_issued(
            fingerprint=fp, serial_number=format(cert.serial_number, "x"), subject=cert.subject.rfc4514_string(),
            school_id=school_id, issued_at=now, not_after=cert.not_valid_after_utc,
            cert_der=cert.public_bytes(Encoding.DER),
        )
        if old_fp:
            udid = self.inventory.rebind_certificate(old_fp, fp)
            self.certs.revoke_for_fingerprint(old_fp, "renewed", now)
            log.info("renewed device certificate for %s", udid)
        else:
            log.info("issued device certificate %s for school %s", cert.subject.rfc4514_string(), school_id)
        return cert

    @staticmethod
    def _check_csr(csr: x509.CertificateSigningRequest) -> None:
        """A CSR we can sign, whose subject fits the certificate record."""
        try:
            pkilib.check_csr(csr)
            subject = csr.subject.rfc4514_string()
        except (ParseError, ValueError) as e:
            raise ScepRefused(f"certification request refused: {e}", FailInfo.badRequest) from None
        if len(subject) > MAX_SUBJECT:
            raise ScepRefused(f"certificate subject longer than {MAX_SUBJECT} characters", FailInfo.badRequest)
