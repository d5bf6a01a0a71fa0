"""CMS SignedData helpers shared by the SCEP server and client (asn1crypto + cryptography)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache

from asn1crypto import cms, core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from mdm.errors import ParseError
from mdm.scep.model import FailInfo, ScepMessageError

# SCEP signed attributes (RFC 8894 §3.2.1)
OID_MESSAGE_TYPE = "2.16.840.1.113733.1.9.2"
OID_PKI_STATUS = "2.16.840.1.113733.1.9.3"
OID_FAIL_INFO = "2.16.840.1.113733.1.9.4"
OID_SENDER_NONCE = "2.16.840.1.113733.1.9.5"
OID_RECIPIENT_NONCE = "2.16.840.1.113733.1.9.6"
OID_TRANSACTION_ID = "2.16.840.1.113733.1.9.7"
OID_FAIL_INFO_TEXT = "1.3.6.1.5.5.7.24.1"
OID_CONTENT_TYPE = "1.2.840.113549.1.9.3"
OID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
OID_SIGNING_TIME = "1.2.840.113549.1.9.5"

# Digests we accept from clients; replies mirror the request's digest.
DIGESTS: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}

# Smallest signer key we answer (the reply is enveloped to it).
MIN_RSA_BITS = 1024

# What malformed DER can make asn1crypto / cryptography raise while decoding.
DECODE_ERRORS = (
    ValueError, TypeError, KeyError, IndexError, AttributeError,
    OverflowError, RecursionError, UnsupportedAlgorithm,
    x509.InvalidVersion,  # a certificate whose version is not v1/v3 (not a ValueError)
)


@dataclass(frozen=True)
class CertRef:
    """How CMS names a certificate (SignerIdentifier / RecipientIdentifier), as plain values.

    Cached by DER so the CA certificate is parsed once; plain values (not asn1crypto
    objects, which parse lazily and are not thread-safe) are shared between threads.
    """

    issuer_and_serial_der: bytes
    serial: int
    issuer: str  # asn1crypto's normalized Name form (what Name equality compares)
    key_identifier: bytes | None


@lru_cache(maxsize=512)
def cert_ref(cert_der: bytes) -> CertRef:
    cert = asn1_x509.Certificate.load(cert_der)
    tbs = cert["tbs_certificate"]
    ias = cms.IssuerAndSerialNumber({"issuer": tbs["issuer"], "serial_number": tbs["serial_number"]})
    return CertRef(ias.dump(), cert.serial_number, cert.issuer.hashable, cert.key_identifier)


def issuer_and_serial(cert: x509.Certificate) -> cms.IssuerAndSerialNumber:
    return cms.IssuerAndSerialNumber.load(cert_ref(der(cert)).issuer_and_serial_der)


def identifies(identifier: cms.SignerIdentifier | cms.RecipientIdentifier, ref: CertRef) -> bool:
    """Whether a SignerIdentifier / RecipientIdentifier names the certificate ``ref``."""
    if identifier.name == "issuer_and_serial_number":
        ias = identifier.chosen
        if ias.dump() == ref.issuer_and_serial_der:
            return True
        return ias["serial_number"].native == ref.serial and ias["issuer"].hashable == ref.issuer
    if identifier.name == "subject_key_identifier":
        return ref.key_identifier is not None and identifier.chosen.native == ref.key_identifier
    return False


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def hash_bytes(digest: str, data: bytes) -> bytes:
    h = hashes.Hash(DIGESTS[digest]())
    h.update(data)
    return h.finalize()


def attr(kind: str, value) -> cms.CMSAttribute:
    return cms.CMSAttribute({"type": kind, "values": [value]})


_PRINTABLE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 '()+,-./:=?")


def printable(text: str) -> core.PrintableString:
    return core.PrintableString(text)


def scep_string(text: str) -> core.AbstractString:
    """PrintableString as RFC 8894 asks, UTF8String for text outside its character set
    (some clients send transaction IDs in other string types)."""
    return core.PrintableString(text) if set(text) <= _PRINTABLE else core.UTF8String(text)


def signed_data(
    content: bytes | None,
    signer: x509.Certificate,
    key: rsa.RSAPrivateKey,
    extra_attrs: list[cms.CMSAttribute],
    *,
    digest: str = "sha256",
    certs: list[x509.Certificate] | tuple[x509.Certificate, ...] = (),
    signing_time: dt.datetime | None = None,
) -> bytes:
    """DER ContentInfo(SignedData) over ``content`` (absent if None), one RSA signer with attrs."""
    if digest not in DIGESTS:
        raise ParseError(f"unsupported digest {digest!r}")
    now = (signing_time or dt.datetime.now(dt.timezone.utc)).replace(microsecond=0)
    attrs = cms.CMSAttributes([
        attr("content_type", "data"),
        attr("signing_time", cms.Time(name="utc_time", value=core.UTCTime(now))),
        attr("message_digest", hash_bytes(digest, content or b"")),
        *extra_attrs,
    ])
    attrs_der = attrs.dump()
    signature = key.sign(attrs_der, padding.PKCS1v15(), DIGESTS[digest]())
    signer_info = cms.SignerInfo({
        "version": "v1",
        "sid": cms.SignerIdentifier(name="issuer_and_serial_number", value=issuer_and_serial(signer)),
        "digest_algorithm": {"algorithm": digest},
        "signed_attrs": cms.CMSAttributes.load(attrs_der),
        "signature_algorithm": {"algorithm": "rsassa_pkcs1v15", "parameters": core.Null()},
        "signature": signature,
    })
    # Assemble from freshly loaded (lazy) parts: asn1crypto then copies their encodings
    # instead of re-encoding every nested child at each level.
    encap = {"content_type": "data"}
    if content is not None:
        encap["content"] = content
    all_certs = [asn1_x509.Certificate.load(der(c)) for c in (signer, *(c for c in certs if c != signer))]
    sd = cms.SignedData({
        "version": "v1",
        "digest_algorithms": [{"algorithm": digest}],
        "encap_content_info": encap,
        "certificates": all_certs,
        "signer_infos": [cms.SignerInfo.load(signer_info.dump())],
    })
    return cms.ContentInfo({"content_type": "signed_data", "content": cms.SignedData.load(sd.dump())}).dump()


def certs_only(certs: list[x509.Certificate]) -> bytes:
    """Degenerate certs-only SignedData (RFC 8894 §3.4), first certificate first in input order."""
    sd = cms.SignedData({
        "version": "v1",
        "digest_algorithms": [],
        "encap_content_info": {"content_type": "data"},
        "certificates": [asn1_x509.Certificate.load(der(c)) for c in certs],
        "signer_infos": [],
    })
    return cms.ContentInfo({"content_type": "signed_data", "content": sd}).dump()


def load_signed_data(data: bytes) -> cms.SignedData:
    """Parse a ContentInfo(SignedData). asn1crypto parses lazily, so callers still guard
    later field access with DECODE_ERRORS."""
    try:
        info = cms.ContentInfo.load(data, strict=True)
        if info["content_type"].native != "signed_data":
            raise ParseError("not a CMS SignedData")
        return info["content"]
    except DECODE_ERRORS as e:
        raise ParseError(f"malformed CMS SignedData: {type(e).__name__}: {e}") from None


def certificates(sd: cms.SignedData) -> list[bytes]:
    """DER of the X.509 certificates in a SignedData (other certificate kinds skipped)."""
    return [choice.chosen.dump() for choice in sd["certificates"] or [] if choice.name == "certificate"]


def find_signer_cert(signer_info: cms.SignerInfo, candidates: list[bytes]) -> bytes | None:
    """The DER certificate among ``candidates`` that the SignerInfo's sid names."""
    for cert_der in candidates:
        if identifies(signer_info["sid"], cert_ref(cert_der)):
            return cert_der
    return None


def signed_attributes(signer_info: cms.SignerInfo) -> dict[str, core.Asn1Value]:
    """Signed attributes by dotted OID -> single value (universal types loaded for unknown OIDs)."""
    attrs = signer_info["signed_attrs"]
    if not attrs:
        raise ParseError("SignerInfo has no signed attributes")
    out: dict[str, core.Asn1Value] = {}
    for a in attrs:
        oid = a["type"].dotted
        values = a["values"]
        if oid in out or len(values) != 1:
            raise ParseError(f"attribute {oid} must occur once with one value")
        value = values[0]
        out[oid] = core.load(value.dump()) if isinstance(value, core.Any) else value
    return out


def string_attr(attrs: dict[str, core.Asn1Value], oid: str) -> str | None:
    value = attrs.get(oid)
    if value is None:
        return None
    if not isinstance(value, core.AbstractString):
        raise ParseError(f"attribute {oid} is not a string")
    return value.native


def bytes_attr(attrs: dict[str, core.Asn1Value], oid: str) -> bytes | None:
    value = attrs.get(oid)
    if value is None:
        return None
    if not isinstance(value, core.OctetString):
        raise ParseError(f"attribute {oid} is not an OCTET STRING")
    return value.native


def verify_signer(
    signer_info: cms.SignerInfo, signer: x509.Certificate, content: bytes
) -> tuple[str, dict[str, core.Asn1Value]]:
    """Check digest algorithm, contentType, messageDigest and the RSA signature.

    Returns (digest name, signed attributes). Raises ScepMessageError (no partial).
    """
    digest = signer_info["digest_algorithm"]["algorithm"].native
    if digest not in DIGESTS:
        raise ScepMessageError(f"unsupported digest algorithm {digest}", FailInfo.badAlg)
    sig_alg = signer_info["signature_algorithm"]
    try:
        rsa_v15 = sig_alg.signature_algo == "rsassa_pkcs1v15"
        hash_ok = sig_alg["algorithm"].native == "rsassa_pkcs1v15" or sig_alg.hash_algo == digest
    except (ValueError, TypeError, KeyError):  # unknown to asn1crypto, or bad parameters
        rsa_v15 = hash_ok = False
    if not rsa_v15:
        raise ScepMessageError(f"unsupported signature algorithm {sig_alg['algorithm'].dotted}", FailInfo.badAlg)
    if not hash_ok:
        raise ScepMessageError("signature hash differs from the digest algorithm", FailInfo.badAlg)
    pub = signer.public_key()
    if not isinstance(pub, rsa.RSAPublicKey) or pub.key_size < MIN_RSA_BITS:
        raise ScepMessageError(f"signer key is not RSA of at least {MIN_RSA_BITS} bits", FailInfo.badAlg)
    attrs = signed_attributes(signer_info)
    content_type = attrs.get(OID_CONTENT_TYPE)
    if not isinstance(content_type, cms.ContentType) or content_type.native != "data":
        raise ScepMessageError("signed contentType attribute missing or not id-data")
    md = attrs.get(OID_MESSAGE_DIGEST)
    if not isinstance(md, core.OctetString) or md.native != hash_bytes(digest, content):
        raise ScepMessageError("messageDigest does not match the content")
    to_verify = b"\x31" + signer_info["signed_attrs"].dump()[1:]  # [0] IMPLICIT -> SET OF
    try:
        pub.verify(signer_info["signature"].native, to_verify, padding.PKCS1v15(), DIGESTS[digest]())
    except InvalidSignature:
        raise ScepMessageError("PKIMessage signature is invalid") from None
    return digest, attrs


def signing_time(attrs: dict[str, core.Asn1Value]) -> dt.datetime | None:
    value = attrs.get(OID_SIGNING_TIME)
    if value is None:
        return None
    if not isinstance(value, cms.Time):
        raise ParseError("signingTime is not a Time")
    when = value.native
    if not isinstance(when, dt.datetime):
        raise ParseError("signingTime is not a datetime")
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)
