"""Parse and verify a SCEP PKIMessage (RFC 8894 §3.2) on the server side."""

from __future__ import annotations

import dataclasses
import datetime as dt

from asn1crypto import core
from asn1crypto import csr as asn1_csr
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from mdm.errors import ParseError
from mdm.pki import Identity, utcnow
from mdm.scep import envelope
from mdm.scep.cms import (
    DECODE_ERRORS, DIGESTS, OID_MESSAGE_TYPE, OID_SENDER_NONCE, OID_TRANSACTION_ID,
    bytes_attr, certificates, find_signer_cert, load_signed_data, signed_attributes,
    signing_time, string_attr, verify_signer,
)
from mdm.scep.model import MESSAGE_TYPES, REQUEST_TYPES, FailInfo, ScepMessageError, ScepRequest

MAX_TRANSACTION_ID = 256
MAX_NONCE = 256
OID_CHALLENGE_PASSWORD = "1.2.840.113549.1.9.7"


class IssuerAndSubject(core.Sequence):
    """CertPoll / GetCertInitial message content (RFC 8894 §3.3.3)."""

    _fields = [("issuer", asn1_x509.Name), ("subject", asn1_x509.Name)]


def _challenge(csr_der: bytes) -> str | None:
    """challengePassword from a CSR, whatever string type the client chose."""
    req = asn1_csr.CertificationRequest.load(csr_der)
    found = None
    for attribute in req["certification_request_info"]["attributes"]:
        if attribute["type"].dotted != OID_CHALLENGE_PASSWORD:
            continue
        values = attribute["values"]
        if found is not None or len(values) != 1:
            raise ParseError("challengePassword must occur once with one value")
        value = core.load(values[0].dump())
        if not isinstance(value, core.AbstractString):
            raise ParseError("challengePassword is not a string")
        found = value.native
    return found


def _outer(data: bytes) -> tuple[ScepRequest, object, bytes]:
    """Signature-level parse: signer certificate, transaction and nonce (nothing verified)."""
    sd = load_signed_data(data)
    try:
        infos = sd["signer_infos"]
        if len(infos) != 1:
            raise ParseError("PKIMessage must have exactly one SignerInfo")
        signer_info = infos[0]
        encap = sd["encap_content_info"]
        if encap["content_type"].native != "data":
            raise ParseError("PKIMessage content is not id-data")
        content = encap["content"].native
        if not isinstance(content, bytes) or not content:
            raise ParseError("PKIMessage has no pkcsPKIEnvelope")
        signer_der = find_signer_cert(signer_info, certificates(sd))
        if signer_der is None:
            raise ParseError("the signer's certificate is not in the PKIMessage")
        signer_cert = x509.load_der_x509_certificate(signer_der)
        attrs = signed_attributes(signer_info)
        transaction_id = string_attr(attrs, OID_TRANSACTION_ID)
        nonce = bytes_attr(attrs, OID_SENDER_NONCE)
        type_code = string_attr(attrs, OID_MESSAGE_TYPE)
        digest = signer_info["digest_algorithm"]["algorithm"].native
    except ParseError:
        raise
    except DECODE_ERRORS as e:
        raise ParseError(f"malformed PKIMessage: {type(e).__name__}: {e}") from None
    if not transaction_id or len(transaction_id) > MAX_TRANSACTION_ID:
        raise ParseError("transactionID missing or too long")
    if not nonce or len(nonce) > MAX_NONCE:
        raise ParseError("senderNonce missing or too long")
    if type_code is None:
        raise ParseError("messageType missing")
    partial = ScepRequest(
        message_type=MESSAGE_TYPES.get(type_code.strip(), f"unknown({type_code[:8]})"),
        transaction_id=transaction_id,
        sender_nonce=nonce,
        csr=None,
        challenge=None,
        signer_cert=signer_cert,
        digest_algorithm=digest if digest in DIGESTS else "sha256",
        content_encryption=envelope.DEFAULT_CIPHER,
        raw=data,
    )
    return partial, signer_info, content


def _check_renewal_signer(cert: x509.Certificate, ca: Identity, now: dt.datetime) -> None:
    """A RenewalReq must be signed by a current certificate that our CA issued."""
    try:
        cert.verify_directly_issued_by(ca.cert)
    except (ValueError, TypeError, InvalidSignature):
        raise ScepMessageError("RenewalReq not signed by a certificate from this CA", FailInfo.badCertId) from None
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise ScepMessageError("RenewalReq signed by a certificate outside its validity", FailInfo.badTime)


def _inner(
    partial: ScepRequest, signer_info, content: bytes, ca: Identity,
    now: dt.datetime, max_clock_skew: dt.timedelta | None,
) -> ScepRequest:
    digest, attrs = verify_signer(signer_info, partial.signer_cert, content)
    if partial.message_type not in REQUEST_TYPES:
        raise ScepMessageError(f"unsupported messageType {partial.message_type}", FailInfo.badRequest)
    signed_at = signing_time(attrs)
    if max_clock_skew is not None and signed_at is not None and abs(now - signed_at) > max_clock_skew:
        raise ScepMessageError("signingTime too far from server time", FailInfo.badTime)
    if partial.message_type == "RenewalReq":
        _check_renewal_signer(partial.signer_cert, ca, now)
    plain, cipher = envelope.decrypt(content, ca.cert, ca.key)
    csr = challenge = None
    if partial.message_type == "GetCertInitial":
        IssuerAndSubject.load(plain, strict=True).native  # noqa: B018  (validate the structure)
    else:
        try:
            csr = x509.load_der_x509_csr(plain)
        except ValueError:
            raise ScepMessageError("pkcsPKIEnvelope does not hold a DER CSR") from None
        if not csr.is_signature_valid:
            raise ScepMessageError("CSR signature is invalid")
        challenge = _challenge(plain)
    return dataclasses.replace(
        partial, csr=csr, challenge=challenge, digest_algorithm=digest,
        content_encryption=cipher, signing_time=signed_at,
    )


def parse_pki_message(
    data: bytes,
    ca: Identity,
    *,
    now: dt.datetime | None = None,
    max_clock_skew: dt.timedelta | None = None,
) -> ScepRequest:
    """Parse, verify and decrypt a PKIMessage addressed to ``ca``.

    Raises ParseError if the body is not a PKIMessage we can even answer, and
    ScepMessageError (a ParseError, with ``partial`` and ``fail_info``) when a signed
    failure reply is possible. Checks: digest and signature algorithms, contentType,
    messageDigest and the RSA signature over the signed attributes against the
    signer certificate; for RenewalReq that our CA issued the (valid) signer
    certificate; optionally the signingTime against ``now`` +- ``max_clock_skew``;
    the CSR's own signature.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ParseError("PKIMessage must be bytes")
    data = bytes(data)
    partial, signer_info, content = _outer(data)
    now = now or utcnow()
    try:
        return _inner(partial, signer_info, content, ca, now, max_clock_skew)
    except ScepMessageError as e:
        raise ScepMessageError(e.message, e.fail_info, partial) from None
    except ParseError as e:
        raise ScepMessageError(e.message, FailInfo.badMessageCheck, partial) from None
    except DECODE_ERRORS as e:
        raise ScepMessageError(
            f"malformed PKIMessage: {type(e).__name__}: {e}", FailInfo.badMessageCheck, partial
        ) from None
