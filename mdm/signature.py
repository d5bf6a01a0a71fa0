"""Device authentication by ``Mdm-Signature`` (detached CMS SignedData).

An enrolled iPad signs every check-in and command-report body with its device
identity and sends ``Mdm-Signature: <base64 of a detached CMS SignedData>``.
RSA PKCS#1 v1.5 with SHA-1 or SHA-256 both occur in the field, with or without
signed attributes; the signer certificate travels in the ``certificates`` set.

``SignatureVerifier`` runs on every device request, so per-certificate work
(parsing, checking it was issued by one of our CAs) is done once and cached,
keyed by the SHA-256 of the certificate DER, which is also the fingerprint we
bind a device to. Validity dates are still checked on every call.

``parse_signed_data`` / ``check_signature`` are the CMS core, shared with
``profiles.signing``; they take the error class to raise.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from asn1crypto import cms, core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from mdm.errors import CertAuthError, MDMError
from mdm.pki import utcnow

MAX_HEADER_CHARS = 64 * 1024

HASHES: dict[str, hashes.HashAlgorithm] = {
    "sha1": hashes.SHA1(),
    "sha224": hashes.SHA224(),
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512(),
}
_PKCS1 = padding.PKCS1v15()


def _oid(dotted: str) -> bytes:
    return core.ObjectIdentifier(dotted).contents


_OID_DATA = _oid("1.2.840.113549.1.7.1")
_OID_SIGNED_DATA = _oid("1.2.840.113549.1.7.2")
_OID_CONTENT_TYPE = _oid("1.2.840.113549.1.9.3")
_OID_MESSAGE_DIGEST = _oid("1.2.840.113549.1.9.4")
_OID_RSA = _oid("1.2.840.113549.1.1.1")
_DIGEST_OIDS = {
    _oid("1.3.14.3.2.26"): "sha1",
    _oid("2.16.840.1.101.3.4.2.4"): "sha224",
    _oid("2.16.840.1.101.3.4.2.1"): "sha256",
    _oid("2.16.840.1.101.3.4.2.2"): "sha384",
    _oid("2.16.840.1.101.3.4.2.3"): "sha512",
}
_ECDSA_WITH = {  # ecdsa-with-SHA* -> the digest it implies (profile signers may use P-256 keys)
    _oid("1.2.840.10045.4.1"): "sha1",
    _oid("1.2.840.10045.4.3.2"): "sha256",
    _oid("1.2.840.10045.4.3.3"): "sha384",
    _oid("1.2.840.10045.4.3.4"): "sha512",
}
_RSA_WITH = {  # sha*WithRSAEncryption -> the digest it implies
    _oid("1.2.840.113549.1.1.5"): "sha1",
    _oid("1.2.840.113549.1.1.14"): "sha224",
    _oid("1.2.840.113549.1.1.11"): "sha256",
    _oid("1.2.840.113549.1.1.12"): "sha384",
    _oid("1.2.840.113549.1.1.13"): "sha512",
}


def _dotted(contents: bytes) -> str:
    try:
        return core.ObjectIdentifier.load(core.ObjectIdentifier(contents=contents).dump()).dotted
    except Exception:
        return contents.hex()


@dataclass(frozen=True, slots=True)
class SignedParts:
    """What verification needs from a SignedData, as plain bytes and names."""

    content: bytes | None  # encapsulated content; None when detached
    certs: tuple[bytes, ...]  # DER of each certificate in the certificates set, as sent
    sid_issuer: bytes | None  # issuerAndSerialNumber: issuer Name DER
    sid_serial: int | None
    sid_ski: bytes | None  # subjectKeyIdentifier form
    digest: str  # key of HASHES
    signed_attrs: bytes | None  # DER re-tagged as SET OF: exactly what was signed
    message_digest: bytes | None
    signature: bytes


class _NotDer(Exception):
    """The fast DER walk cannot read this (BER, truncation, unexpected shape)."""


def _items(d: bytes, pos: int, end: int) -> list[tuple[int, int, int, int]]:
    """Children of a DER value as (tag, header start, content start, end); definite lengths only."""
    out = []
    while pos < end:
        if end - pos < 2:
            raise _NotDer("truncated")
        tag, n, start = d[pos], d[pos + 1], pos + 2
        if tag & 0x1F == 0x1F:
            raise _NotDer("high tag number")
        if n & 0x80:
            k = n & 0x7F
            if k == 0 or k > 3 or end - start < k:
                raise _NotDer("indefinite or oversized length")
            n = int.from_bytes(d[start : start + k], "big")
            start += k
        if end - start < n:
            raise _NotDer("truncated")
        out.append((tag, pos, start, start + n))
        pos = start + n
    return out


def _one(d: bytes, item: tuple[int, int, int, int], tag: int, what: str) -> tuple[int, int, int, int]:
    """The single child of ``item``, which must carry ``tag``."""
    kids = _items(d, item[2], item[3])
    if len(kids) != 1 or kids[0][0] != tag:
        raise _NotDer(f"malformed {what}")
    return kids[0]


def _alg(d: bytes, item: tuple[int, int, int, int]) -> bytes:
    kids = _items(d, item[2], item[3]) if item[0] == 0x30 else []
    if not kids or kids[0][0] != 0x06 or len(kids) > 2:
        raise _NotDer("malformed AlgorithmIdentifier")
    return d[kids[0][2] : kids[0][3]]


def _parse_der(d: bytes, error: type[MDMError]) -> SignedParts:
    top = _items(d, 0, len(d))
    if len(top) != 1 or top[0][0] != 0x30:
        raise _NotDer("not a single SEQUENCE")
    ci = _items(d, top[0][2], top[0][3])
    if len(ci) != 2 or ci[0][0] != 0x06 or ci[1][0] != 0xA0:
        raise _NotDer("not a ContentInfo")
    if d[ci[0][2] : ci[0][3]] != _OID_SIGNED_DATA:
        raise error("CMS content is not SignedData")
    sd = _items(d, *_one(d, ci[1], 0x30, "SignedData")[2:])
    if len(sd) < 4 or sd[0][0] != 0x02 or sd[1][0] != 0x31 or sd[2][0] != 0x30 or sd[-1][0] != 0x31:
        raise _NotDer("malformed SignedData")
    certs: tuple[bytes, ...] = ()
    for tag, _, s, e in sd[3:-1]:
        if tag == 0xA0:
            certs = tuple(d[h:ce] for t, h, _, ce in _items(d, s, e) if t == 0x30)
        elif tag != 0xA1:  # crls are ignored
            raise _NotDer("malformed SignedData")
    eci = _items(d, sd[2][2], sd[2][3])
    if not 1 <= len(eci) <= 2 or eci[0][0] != 0x06:
        raise _NotDer("malformed EncapsulatedContentInfo")
    if d[eci[0][2] : eci[0][3]] != _OID_DATA:
        raise error("SignedData does not encapsulate id-data")
    content = None
    if len(eci) == 2:
        if eci[1][0] != 0xA0:
            raise _NotDer("malformed EncapsulatedContentInfo")
        octets = _one(d, eci[1], 0x04, "eContent")
        content = d[octets[2] : octets[3]]
    signers = _items(d, sd[-1][2], sd[-1][3])
    if len(signers) != 1:
        raise error(f"SignedData must have exactly one signer, has {len(signers)}")
    if signers[0][0] != 0x30:
        raise _NotDer("malformed SignerInfo")
    si = _items(d, signers[0][2], signers[0][3])
    if len(si) < 5 or si[0][0] != 0x02:
        raise _NotDer("malformed SignerInfo")

    issuer = serial = ski = None
    sid = si[1]
    if sid[0] == 0x30:
        ias = _items(d, sid[2], sid[3])
        if len(ias) != 2 or ias[0][0] != 0x30 or ias[1][0] != 0x02:
            raise _NotDer("malformed IssuerAndSerialNumber")
        issuer = d[ias[0][1] : ias[0][3]]
        serial = int.from_bytes(d[ias[1][2] : ias[1][3]], "big", signed=True)
    elif sid[0] == 0x80:
        ski = d[sid[2] : sid[3]]
    else:
        raise _NotDer("malformed SignerIdentifier")

    digest_oid = _alg(d, si[2])
    digest = _DIGEST_OIDS.get(digest_oid)
    if digest is None:
        raise error(f"unsupported digest algorithm {_dotted(digest_oid)}")
    rest = si[3:]
    attrs_item = rest.pop(0) if rest[0][0] == 0xA0 else None
    if not 2 <= len(rest) <= 3 or rest[1][0] != 0x04 or (len(rest) == 3 and rest[2][0] != 0xA1):
        raise _NotDer("malformed SignerInfo")
    sig_oid = _alg(d, rest[0])
    if sig_oid != _OID_RSA and _RSA_WITH.get(sig_oid) != digest and _ECDSA_WITH.get(sig_oid) != digest:
        raise error(f"unsupported signature algorithm {_dotted(sig_oid)} with digest {digest}")
    signature = d[rest[1][2] : rest[1][3]]

    signed_attrs = message_digest = content_type = None
    if attrs_item is not None:
        for tag, _, s, e in _items(d, attrs_item[2], attrs_item[3]):
            attr = _items(d, s, e) if tag == 0x30 else []
            if len(attr) != 2 or attr[0][0] != 0x06 or attr[1][0] != 0x31:
                raise _NotDer("malformed signed attribute")
            kind = d[attr[0][2] : attr[0][3]]
            if kind == _OID_MESSAGE_DIGEST:
                if message_digest is not None:
                    raise error("duplicate messageDigest attribute")
                value = _one(d, attr[1], 0x04, "messageDigest")
                message_digest = d[value[2] : value[3]]
            elif kind == _OID_CONTENT_TYPE:
                if content_type is not None:
                    raise error("duplicate contentType attribute")
                value = _one(d, attr[1], 0x06, "contentType")
                content_type = d[value[2] : value[3]]
        if message_digest is None:
            raise error("signed attributes lack messageDigest")
        if content_type != _OID_DATA:
            raise error("signed attributes lack contentType id-data")
        signed_attrs = b"\x31" + d[attrs_item[1] + 1 : attrs_item[3]]  # [0] IMPLICIT -> SET OF (RFC 5652 5.4)
    return SignedParts(content, certs, issuer, serial, ski, digest, signed_attrs, message_digest, signature)


def parse_signed_data(der: bytes, *, error: type[MDMError] = CertAuthError) -> SignedParts:
    """Parse a CMS SignedData with exactly one RSA signer; raise ``error`` if malformed.

    The common case (DER, as iPads and cryptography produce) is read by a direct
    walk over the bytes. Anything else (BER indefinite lengths, constructed
    strings) is normalised to DER by asn1crypto first and walked again.
    """
    try:
        return _parse_der(der, error)
    except _NotDer:
        pass
    try:
        der = cms.ContentInfo.load(der, strict=True).dump(force=True)
    except Exception as e:  # asn1crypto parses lazily; hostile input raises many types
        raise error(f"not a valid CMS SignedData: {type(e).__name__}") from None
    try:
        return _parse_der(der, error)
    except _NotDer as e:
        raise error(f"not a valid CMS SignedData: {e}") from None


def sid_matches(parts: SignedParts, cert_der: bytes) -> bool:
    """Whether the signer identifier names the certificate ``cert_der``."""
    try:
        cert = asn1_x509.Certificate.load(cert_der)
        if parts.sid_ski is not None:
            return cert.key_identifier == parts.sid_ski
        tbs = cert["tbs_certificate"]
        if tbs["serial_number"].native != parts.sid_serial:
            return False
        return _same_name(tbs["issuer"].dump(), parts.sid_issuer)
    except Exception:  # a malformed certificate in the set names nobody
        return False


def check_signature(
    parts: SignedParts, content: bytes, public_key: rsa.RSAPublicKey, *, error: type[MDMError] = CertAuthError
) -> None:
    """Check messageDigest (if signed attributes) and the signature over ``content``.

    RSA PKCS#1 v1.5 (devices, and RSA profile signers) or ECDSA (P-256 profile signers).
    """
    algorithm = HASHES[parts.digest]
    scheme = (_PKCS1, algorithm) if isinstance(public_key, rsa.RSAPublicKey) else (ec.ECDSA(algorithm),)
    if not isinstance(public_key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
        raise error("signer key is neither RSA nor EC")
    try:
        if parts.signed_attrs is None:
            public_key.verify(parts.signature, content, *scheme)
            return
        digest = hashlib.new(parts.digest, content).digest()
        if not hmac.compare_digest(digest, parts.message_digest or b""):
            raise error("message digest mismatch: body does not match the signature")
        public_key.verify(parts.signature, parts.signed_attrs, *scheme)
    except InvalidSignature:
        what = "signed attributes" if parts.signed_attrs is not None else "body"
        raise error(f"invalid signature over the {what}") from None


@dataclass(frozen=True)
class VerifiedSigner:
    cert: x509.Certificate
    cert_der: bytes
    fingerprint: str  # sha256 hex of DER, same as mdm.pki.fingerprint


@dataclass(frozen=True, slots=True)
class _Entry:
    signer: VerifiedSigner
    public_key: rsa.RSAPublicKey
    issuer_der: bytes
    serial: int
    ski: bytes | None
    not_before: dt.datetime
    not_after: dt.datetime
    ca_not_before: dt.datetime
    ca_not_after: dt.datetime


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
        entry = self._entry_for(parts)
        now = _aware(self._clock())
        if now < entry.not_before:
            raise CertAuthError("device certificate is not yet valid")
        if now > entry.not_after:
            raise CertAuthError("device certificate has expired")
        if not entry.ca_not_before <= now <= entry.ca_not_after:
            raise CertAuthError("issuing CA certificate is outside its validity period")
        check_signature(parts, bytes(body), entry.public_key)
        return entry.signer

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
        return entry.signer

    def _entry_for(self, parts: SignedParts) -> _Entry:
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
        elif entry.serial != parts.sid_serial or not _same_name(entry.issuer_der, parts.sid_issuer):
            raise CertAuthError("signer identifier does not name the included certificate")
        return entry

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
        return _Entry(
            VerifiedSigner(cert, cert_der, key.hex()), public_key, issuer_der, serial, ski,
            not_before, not_after, ca.not_valid_before_utc, ca.not_valid_after_utc,
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


def _same_name(a: bytes, b: bytes | None) -> bool:
    if b is None:
        return False
    if a == b:
        return True
    try:
        return asn1_x509.Name.load(a) == asn1_x509.Name.load(b)
    except Exception:
        return False


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
        info["signature"] = key.sign(attrs.dump(), _PKCS1, HASHES[digest])
    else:
        info["signature"] = key.sign(body, _PKCS1, HASHES[digest])
    signed = cms.SignedData({
        "version": "v1",
        "digest_algorithms": [{"algorithm": digest}],
        "encap_content_info": {"content_type": "data"},
        "certificates": [asn1_cert],
        "signer_infos": [cms.SignerInfo(info)],
    })
    der = cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump()
    return base64.b64encode(der).decode("ascii")
