"""The CMS core shared by device authentication and profile signing: a strict DER walk of a
(detached or attached) SignedData with one signer, and the check of its signature.

``parse_signed_data`` / ``check_signature`` take the error class to raise, so a device's
``Mdm-Signature`` fails with ``CertAuthError`` and a profile with the profile's error.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from asn1crypto import cms, core
from asn1crypto import x509 as asn1_x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from mdm.errors import CertAuthError, MDMError

HASHES: dict[str, hashes.HashAlgorithm] = {
    "sha1": hashes.SHA1(),
    "sha224": hashes.SHA224(),
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512(),
}
PKCS1 = padding.PKCS1v15()


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
        return same_name(tbs["issuer"].dump(), parts.sid_issuer)
    except Exception:  # a malformed certificate in the set names nobody
        return False


def check_signature(
    parts: SignedParts, content: bytes, public_key: rsa.RSAPublicKey, *, error: type[MDMError] = CertAuthError
) -> None:
    """Check messageDigest (if signed attributes) and the signature over ``content``.

    RSA PKCS#1 v1.5 (devices, and RSA profile signers) or ECDSA (P-256 profile signers).
    """
    algorithm = HASHES[parts.digest]
    scheme = (PKCS1, algorithm) if isinstance(public_key, rsa.RSAPublicKey) else (ec.ECDSA(algorithm),)
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


def same_name(a: bytes, b: bytes | None) -> bool:
    if b is None:
        return False
    if a == b:
        return True
    try:
        return asn1_x509.Name.load(a) == asn1_x509.Name.load(b)
    except Exception:
        return False
