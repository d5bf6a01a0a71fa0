"""Device authentication by ``Mdm-Signature`` (detached CMS SignedData).

An enrolled iPad signs every check-in and command-report body with its device
identity and sends ``Mdm-Signature: <base64 of a detached CMS SignedData>``.
RSA PKCS#1 v1.5 with SHA-1 or SHA-256 both occur in the field, with or without
signed attributes; the signer certificate travels in the ``certificates`` set.

``SignatureVerifier`` runs on every device request, so per-certificate work
(parsing, checking it was issued by one of our CAs) is done once and cached,
keyed by the SHA-256 of the certificate DER, which is also the fingerprint we
bind a device to. Validity dates are still checked on every call.

The CMS core (``parse_signed_data`` / ``check_signature``, shared with
``profiles.signing``) is ``mdm.cms``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from asn1crypto import cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_der_public_key
from cryptography.x509.oid import ExtendedKeyUsageOID

from mdm.cms import HASHES, PKCS1, SignedParts, check_signature, parse_signed_data, same_name, sid_matches
from mdm.errors import CertAuthError
from mdm.pki import utcnow

MAX_HEADER_CHARS = 64 * 1024

@dataclass(frozen=True)
class VerifiedSigner:
    cert_der: bytes
    fingerprint: str  # sha256 hex of DER, same as mdm.pki.fingerprint

    @property
    def cert(self) -> x509.Certificate:
        """Parsed on demand: the verifier keeps one entry per device, and a parsed certificate
        with its fields read costs ~5 KB of memory (25,000 devices: ~125 MB per process)."""
        return x509.load_der_x509_certificate(self.cert_der)


@dataclass(frozen=True, slots=True)
class _Entry:
    # what one device costs each worker, for as long as it is cached (~0.8 KB; 25,000 devices:
    # ~20 MB): not the certificate itself, which every request carries again, and what devices of
    # one CA share (issuer name, the CA's validity) is one object for all of them
    public_key: bytes  # SubjectPublicKeyInfo DER: a key object would cost ~1 KB per cached device
    issuer_der: bytes  # shared
    serial: int
    ski: bytes | None
    not_before: dt.datetime
    not_after: dt.datetime
    ca_window: tuple[dt.datetime, dt.datetime]  # shared


def _aware(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.timezone.utc)


class SignatureVerifier:
    """Verify ``Mdm-Signature`` headers against device CAs, caching per certificate."""

    def __init__(
        self,
        ca_certs: list[x509.Certificate],
        *,
        clock: Callable[[], dt.datetime] = utcnow,
        cache_size: int = 100_000,
    ) -> None:
        if not ca_certs:
            raise ValueError("SignatureVerifier needs at least one CA certificate")
        self._cas: dict[x509.Name, list[x509.Certificate]] = {}
        for ca in ca_certs:
            self._cas.setdefault(ca.subject, []).append(ca)
        self._clock = clock
        self._cache_size = max(1, cache_size)
        self._cache: OrderedDict[bytes, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._shared: dict = {}  # equal values of many entries, kept once

    @property
    def cached_certificates(self) -> int:
        return len(self._cache)

    def verify(self, header_value: str | None, body: bytes) -> VerifiedSigner:
        if not header_value:
            raise CertAuthError("missing Mdm-Signature header")
        if len(header_value) > MAX_HEADER_CHARS:
            raise CertAuthError("Mdm-Signature header too large")
        try:
            der = base64.b64decode(header_value.strip(), validate=True)
        except (ValueError, TypeError):
            raise CertAuthError("Mdm-Signature is not valid base64") from None
        if not der:
            raise CertAuthError("Mdm-Signature is empty")
        parts = parse_signed_data(der)
        if parts.content is not None and parts.content != body:
            raise CertAuthError("Mdm-Signature carries content different from the body")
        entry, cert_der, key = self._entry_for(parts)
        now = _aware(self._clock())
        if now < entry.not_before:
            raise CertAuthError("device certificate is not yet valid")
        if now > entry.not_after:
            raise CertAuthError("device certificate has expired")
        if not entry.ca_window[0] <= now <= entry.ca_window[1]:
            raise CertAuthError("issuing CA certificate is outside its validity period")
        check_signature(parts, bytes(body), load_der_public_key(entry.public_key))  # ~2 µs
        return VerifiedSigner(cert_der, key.hex())

    def verify_certificate(self, cert_der: bytes) -> VerifiedSigner:
        """Check a client certificate alone (TLS terminated by a trusted proxy): chain and dates."""
        key = hashlib.sha256(cert_der).digest()
        with self._lock:
            entry = self._cache.get(key)
        if entry is None:
            entry = self._build_entry(cert_der, key)
            with self._lock:
                self._cache[key] = entry
        now = _aware(self._clock())
        if not entry.not_before <= now <= entry.not_after:
            raise CertAuthError("device certificate is outside its validity period")
        return VerifiedSigner(cert_der, key.hex())

    def _entry_for(self, parts: SignedParts) -> tuple[_Entry, bytes, bytes]:
        """(cached entry, signer certificate DER, its SHA-256)"""
        certs = parts.certs
        if not certs:
            raise CertAuthError("Mdm-Signature includes no certificate")
        if len(certs) == 1:
            cert_der = certs[0]  # the usual case: the sid is checked against the cached entry
        else:
            cert_der = next((c for c in certs if sid_matches(parts, c)), b"")
            if not cert_der:
                raise CertAuthError("signer certificate not included in Mdm-Signature")
        key = hashlib.sha256(cert_der).digest()
        with self._lock:
            entry = self._cache.get(key)
            if entry is not None:
                self._cache.move_to_end(key)
        if entry is None:
            entry = self._build_entry(cert_der, key)
            with self._lock:
                self._cache[key] = entry
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        if parts.sid_ski is not None:
            if entry.ski != parts.sid_ski:
                raise CertAuthError("signer identifier does not name the included certificate")
        elif entry.serial != parts.sid_serial or not same_name(entry.issuer_der, parts.sid_issuer):
            raise CertAuthError("signer identifier does not name the included certificate")
        return entry, cert_der, key

    def _build_entry(self, cert_der: bytes, key: bytes) -> _Entry:
        """Parse and chain-check a certificate (only successes are cached)."""
        try:  # cryptography parses fields lazily, so read all we need here
            cert = x509.load_der_x509_certificate(cert_der)
            public_key = cert.public_key()
            issuer, serial = cert.issuer, cert.serial_number
            not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
            try:
                eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            except x509.ExtensionNotFound:
                eku = None
            asn1_cert = asn1_x509.Certificate.load(cert_der)
            issuer_der = asn1_cert["tbs_certificate"]["issuer"].dump()
            ski = asn1_cert.key_identifier
        except Exception as e:  # hostile DER: many exception types
            raise CertAuthError(f"signer certificate is malformed: {type(e).__name__}") from None
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise CertAuthError("signer certificate does not carry an RSA key")
        if eku is not None and ExtendedKeyUsageOID.CLIENT_AUTH not in eku and (
            ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in eku
        ):
            raise CertAuthError("signer certificate is not for client authentication (extendedKeyUsage)")
        ca = self._issuer_of(cert, issuer)
        window = (ca.not_valid_before_utc, ca.not_valid_after_utc)
        with self._lock:
            issuer_der = self._shared.setdefault(issuer_der, issuer_der)
            window = self._shared.setdefault(window, window)
        return _Entry(
            public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo),
            issuer_der, serial, ski, not_before, not_after, window,
        )

    def _issuer_of(self, cert: x509.Certificate, issuer: x509.Name) -> x509.Certificate:
        candidates = self._cas.get(issuer)
        if not candidates:
            raise CertAuthError("device certificate was not issued by a trusted CA (unknown issuer)")
        for ca in candidates:
            try:
                cert.verify_directly_issued_by(ca)
                return ca
            except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
                continue
        raise CertAuthError("device certificate was not issued by a trusted CA (bad certificate signature)")


def sign_detached(
    body: bytes,
    cert: x509.Certificate,
    key: rsa.RSAPrivateKey,
    *,
    digest: str = "sha256",
    signed_attrs: bool = True,
    signing_time: dt.datetime | None = None,
) -> str:
    """Produce an ``Mdm-Signature`` header value the way an iPad does."""
    if digest not in HASHES:
        raise ValueError(f"unsupported digest {digest!r}")
    asn1_cert = asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER))
    sid = cms.SignerIdentifier(
        name="issuer_and_serial_number",
        value=cms.IssuerAndSerialNumber(
            {"issuer": asn1_cert.issuer, "serial_number": asn1_cert.serial_number}
        ),
    )
    info = {
        "version": "v1",
        "sid": sid,
        "digest_algorithm": {"algorithm": digest},
        "signature_algorithm": {"algorithm": "rsassa_pkcs1v15"},
    }
    if signed_attrs:
        when = (signing_time or utcnow()).replace(microsecond=0)
        time = cms.Time(name="utc_time" if when.year < 2050 else "generalized_time", value=when)
        attrs = cms.CMSAttributes([
            cms.CMSAttribute({"type": "content_type", "values": ["data"]}),
            cms.CMSAttribute({"type": "signing_time", "values": [time]}),
            cms.CMSAttribute({"type": "message_digest", "values": [hashlib.new(digest, body).digest()]}),
        ])
        info["signed_attrs"] = attrs
        info["signature"] = key.sign(attrs.dump(), PKCS1, HASHES[digest])
    else:
        info["signature"] = key.sign(body, PKCS1, HASHES[digest])
    signed = cms.SignedData({
        "version": "v1",
        "digest_algorithms": [{"algorithm": digest}],
        "encap_content_info": {"content_type": "data"},
        "certificates": [asn1_cert],
        "signer_infos": [cms.SignerInfo(info)],
    })
    der = cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump()
    return base64.b64encode(der).decode("ascii")
