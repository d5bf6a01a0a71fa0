"""Device authentication, wrapped around the check-in and connect services.

Every device request carries ``Mdm-Signature`` (or, behind a TLS-terminating
proxy that is configured for it, the client certificate in a header). The
certificate must chain to our CA; before Authenticate it must be one we
issued, not revoked and not bound to another device; after Authenticate it
must be the one bound to that UDID.
"""

from __future__ import annotations

import logging

from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import InvalidVersion, load_pem_x509_certificate

from app.storage.interfaces import CertificateStore, CheckinStore, DeviceAuth
from mdm.errors import CertAuthError, CertMismatch, NotEnrolled
from mdm.signature import SignatureVerifier, VerifiedSigner

log = logging.getLogger("schoolmdm.auth")


class DeviceAuthenticator:
    def __init__(self, verifier: SignatureVerifier, checkins: CheckinStore, certs: CertificateStore) -> None:
        self.verifier = verifier
        self.checkins = checkins
        self.certs = certs

    def signer(self, signature: str | None, body: bytes, proxy_cert: str | None = None) -> VerifiedSigner:
        """The verified device certificate: from Mdm-Signature, or from a trusted proxy's header."""
        try:
            if proxy_cert is not None:
                return self.verifier.verify_certificate(_cert_from_header(proxy_cert))
            return self.verifier.verify(signature, body)
        except CertAuthError as e:
            log.warning("device request refused: %s", e.message)
            raise


    def for_authenticate(self, udid: str, signer: VerifiedSigner) -> str:
        cert = self.certs.lookup(signer.fingerprint)
        if cert is None:
            raise CertAuthError("certificate was not issued by this server's SCEP service")
        if cert["revoked_at"] is not None:
            raise CertAuthError("certificate has been revoked")
        owner = cert["udid"] or self.checkins.fingerprint_owner(signer.fingerprint)
        if owner is not None and owner != udid:
            log.warning("certificate reuse refused: bound to %s, presented by %s", owner, udid)
            raise CertMismatch("certificate is bound to another device")
        return signer.fingerprint

    def for_enrolled(self, udid: str, signer: VerifiedSigner, *, allow_authenticated: bool = True) -> str:
        return self.enrolled(udid, signer, allow_authenticated=allow_authenticated).cert_fingerprint

    def enrolled(self, udid: str, signer: VerifiedSigner, *, allow_authenticated: bool = True) -> DeviceAuth:
        """The device's record, once its certificate is the one bound to it (the connect path passes
        it on, so nothing reads it twice)."""
        auth = self.checkins.device_auth(udid)
        if auth is None or auth.enrollment_state in ("unenrolled", "pending"):
            raise NotEnrolled("device is not enrolled")
        if auth.enrollment_state == "authenticated" and not allow_authenticated:
            raise NotEnrolled("device has not completed enrollment (no TokenUpdate yet)")
        if auth.cert_fingerprint != signer.fingerprint:
            log.warning("certificate mismatch for %s", udid)
            raise CertMismatch("certificate is not the one bound to this device")
        return auth


def _cert_from_header(value: str) -> bytes:
    """nginx's $ssl_client_escaped_cert: a URL-encoded PEM certificate."""
    from urllib.parse import unquote

    try:
        return load_pem_x509_certificate(unquote(value).encode()).public_bytes(Encoding.DER)
    except (ValueError, InvalidVersion):
        raise CertAuthError("client certificate header does not hold a PEM certificate") from None
