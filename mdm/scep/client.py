"""Client side of SCEP (used by the fleet simulator): CSRs, PKCSReq/RenewalReq
PKIMessages and CertRep parsing."""

from __future__ import annotations

import datetime as dt
import hashlib
import os

from asn1crypto import core
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import AttributeOID, NameOID

from mdm.errors import ParseError
from mdm.pki import utcnow
from mdm.scep import envelope
from mdm.scep.cms import (
    DECODE_ERRORS, DIGESTS, OID_FAIL_INFO, OID_FAIL_INFO_TEXT, OID_MESSAGE_TYPE,
    OID_PKI_STATUS, OID_RECIPIENT_NONCE, OID_SENDER_NONCE, OID_TRANSACTION_ID,
    attr, bytes_attr, certificates, der, find_signer_cert, load_signed_data, printable,
    signed_attributes, signed_data, string_attr, verify_signer,
)
from mdm.scep.model import (
    MESSAGE_TYPE_CODES, STATUS_FAILURE, STATUS_PENDING, STATUS_SUCCESS, FailInfo,
    ScepPending, ScepRefused,
)

NONCE_BYTES = 16


def make_csr(
    key: rsa.RSAPrivateKey, cn: str, challenge: str | None, org: str | None = None
) -> x509.CertificateSigningRequest:
    attrs = []
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    if challenge is not None:
        builder = builder.add_attribute(AttributeOID.CHALLENGE_PASSWORD, challenge.encode("utf-8"))
    return builder.sign(key, hashes.SHA256())


def self_signed(key: rsa.RSAPrivateKey, cn: str) -> x509.Certificate:
    """The throwaway certificate a PKCSReq is signed with (RFC 8894 §2.3)."""
    now = utcnow()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


def transaction_id_for(public_key) -> str:
    """RFC 8894 §3.2.1.1: a hash of the public key being certified (hex SHA-256)."""
    spki = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()


def build_request(
    csr_key: rsa.RSAPrivateKey,
    csr: x509.CertificateSigningRequest,
    signer_cert: x509.Certificate,
    signer_key: rsa.RSAPrivateKey,
    ca_cert: x509.Certificate,
    *,
    message_type: str = "PKCSReq",
    cipher: str = "aes256",
    digest: str = "sha256",
) -> tuple[bytes, str]:
    """A DER PKIMessage and its transactionID. For PKCSReq the signer is a self-signed
    certificate for ``csr_key``; for RenewalReq it is the current certificate and key."""
    if message_type not in ("PKCSReq", "RenewalReq"):
        raise ValueError(f"cannot build a {message_type!r} request")
    if cipher not in envelope.CIPHERS:
        raise ValueError(f"unknown cipher {cipher!r}")
    if digest not in DIGESTS:
        raise ValueError(f"unknown digest {digest!r}")
    if csr.public_key() != csr_key.public_key():
        raise ValueError("the CSR is not for csr_key")
    transaction_id = transaction_id_for(csr_key.public_key())
    pki_envelope = envelope.encrypt(csr.public_bytes(serialization.Encoding.DER), ca_cert, cipher)
    attrs = [
        attr(OID_MESSAGE_TYPE, printable(MESSAGE_TYPE_CODES[message_type])),
        attr(OID_TRANSACTION_ID, printable(transaction_id)),
        attr(OID_SENDER_NONCE, core.OctetString(os.urandom(NONCE_BYTES))),
    ]
    message = signed_data(pki_envelope, signer_cert, signer_key, attrs, digest=digest)
    return message, transaction_id


def request_sender_nonce(message: bytes) -> bytes:
    """The senderNonce of a PKIMessage we built (to check the CertRep's recipientNonce)."""
    sd = load_signed_data(message)
    try:
        nonce = bytes_attr(signed_attributes(sd["signer_infos"][0]), OID_SENDER_NONCE)
    except DECODE_ERRORS as e:
        raise ParseError(f"malformed PKIMessage: {type(e).__name__}") from None
    if nonce is None:
        raise ParseError("PKIMessage has no senderNonce")
    return nonce


def _signer(sd, signer_info, ca_cert: x509.Certificate) -> x509.Certificate:
    """The CertRep signer: our CA, or an RA certificate the CA issued."""
    ca_der = der(ca_cert)
    found = find_signer_cert(signer_info, [ca_der, *certificates(sd)])
    if found is None:
        raise ParseError("CertRep signer certificate not found")
    if found == ca_der:
        return ca_cert
    signer = x509.load_der_x509_certificate(found)
    try:
        signer.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        raise ParseError("CertRep signed by a certificate not from the CA") from None
    return signer


def _issued(plain: bytes, ca_cert: x509.Certificate) -> x509.Certificate:
    inner = load_signed_data(plain)
    ca_der = der(ca_cert)
    for cert_der in certificates(inner):
        if cert_der != ca_der:
            issued = x509.load_der_x509_certificate(cert_der)
            try:
                issued.verify_directly_issued_by(ca_cert)
            except (ValueError, TypeError, InvalidSignature):
                raise ParseError("issued certificate is not signed by the CA") from None
            return issued
    raise ParseError("CertRep holds no issued certificate")


def parse_cert_rep(
    data: bytes,
    *,
    transaction_id: str,
    recipient_key: rsa.RSAPrivateKey,
    recipient_cert: x509.Certificate,
    ca_cert: x509.Certificate,
    sender_nonce: bytes | None = None,
) -> x509.Certificate:
    """Verify a CertRep (CA signature, messageType, transactionID, recipientNonce if
    ``sender_nonce`` is given) and return the issued certificate.

    Raises ScepRefused(fail_info) on FAILURE, ScepPending on PENDING, ParseError otherwise.
    """
    sd = load_signed_data(bytes(data))
    try:
        if len(sd["signer_infos"]) != 1:
            raise ParseError("CertRep must have exactly one SignerInfo")
        signer_info = sd["signer_infos"][0]
        signer = _signer(sd, signer_info, ca_cert)
        content = sd["encap_content_info"]["content"].native
        _, attrs = verify_signer(signer_info, signer, content or b"")
        if string_attr(attrs, OID_MESSAGE_TYPE) != MESSAGE_TYPE_CODES["CertRep"]:
            raise ParseError("reply is not a CertRep")
        if string_attr(attrs, OID_TRANSACTION_ID) != transaction_id:
            raise ParseError("CertRep transactionID does not match the request")
        if sender_nonce is not None and bytes_attr(attrs, OID_RECIPIENT_NONCE) != sender_nonce:
            raise ParseError("CertRep recipientNonce does not match our senderNonce")
        status = string_attr(attrs, OID_PKI_STATUS)
        if status == STATUS_FAILURE:
            code = string_attr(attrs, OID_FAIL_INFO) or ""
            text = string_attr(attrs, OID_FAIL_INFO_TEXT)
            try:
                fail_info = FailInfo(int(code))
            except ValueError:
                raise ParseError(f"CertRep FAILURE with unknown failInfo {code[:8]!r}") from None
            raise ScepRefused(text or f"SCEP request refused: {fail_info.name}", fail_info)
        if status == STATUS_PENDING:
            raise ScepPending("SCEP request is pending approval")
        if status != STATUS_SUCCESS:
            raise ParseError("CertRep has no valid pkiStatus")
        if not content:
            raise ParseError("SUCCESS CertRep has no pkcsPKIEnvelope")
        plain, _ = envelope.decrypt(content, recipient_cert, recipient_key)
        return _issued(plain, ca_cert)
    except DECODE_ERRORS as e:
        raise ParseError(f"malformed CertRep: {type(e).__name__}: {e}") from None
