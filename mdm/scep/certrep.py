"""Build CertRep PKIMessages (RFC 8894 §3.3.2), signed by the CA."""

from __future__ import annotations

import os

from asn1crypto import core
from cryptography import x509

from mdm.pki import Identity
from mdm.scep import envelope
from mdm.scep.cms import (
    DIGESTS, OID_FAIL_INFO, OID_FAIL_INFO_TEXT, OID_MESSAGE_TYPE, OID_PKI_STATUS,
    OID_RECIPIENT_NONCE, OID_SENDER_NONCE, OID_TRANSACTION_ID, attr, certs_only,
    printable, scep_string, signed_data,
)
from mdm.scep.model import (
    MESSAGE_TYPE_CODES, STATUS_FAILURE, STATUS_SUCCESS, FailInfo, ScepRequest,
)

NONCE_BYTES = 16
MAX_FAIL_TEXT = 200


def _reply_attrs(req: ScepRequest, status: str) -> list:
    return [
        attr(OID_MESSAGE_TYPE, printable(MESSAGE_TYPE_CODES["CertRep"])),
        attr(OID_PKI_STATUS, printable(status)),
        attr(OID_TRANSACTION_ID, scep_string(req.transaction_id)),
        attr(OID_SENDER_NONCE, core.OctetString(os.urandom(NONCE_BYTES))),
        attr(OID_RECIPIENT_NONCE, core.OctetString(req.sender_nonce)),
    ]


def _digest(req: ScepRequest) -> str:
    """Reply with the client's digest when we accept it (old clients may only know SHA-1)."""
    return req.digest_algorithm if req.digest_algorithm in DIGESTS else "sha256"


def _cipher(req: ScepRequest) -> str:
    """Reply in the request's cipher; single DES is upgraded to DES-EDE3, unknown to AES-256."""
    if req.content_encryption == "des":
        return "3des"
    return req.content_encryption if req.content_encryption in envelope.CIPHERS else envelope.DEFAULT_CIPHER


def cert_rep_success(req: ScepRequest, issued: x509.Certificate, ca: Identity) -> bytes:
    """SUCCESS CertRep: the issued certificate as certs-only SignedData, enveloped to the
    request's signer certificate, inside SignedData signed by the CA."""
    inner = certs_only([issued])
    enveloped = envelope.encrypt(inner, req.signer_cert, _cipher(req))
    return signed_data(
        enveloped, ca.cert, ca.key, _reply_attrs(req, STATUS_SUCCESS),
        digest=_digest(req), certs=(ca.cert, *ca.chain),
    )


def cert_rep_failure(
    req: ScepRequest, fail_info: FailInfo, ca: Identity, *, text: str | None = None
) -> bytes:
    """FAILURE CertRep with failInfo (and failInfoText if given); no pkcsPKIEnvelope."""
    attrs = _reply_attrs(req, STATUS_FAILURE)
    attrs.append(attr(OID_FAIL_INFO, printable(str(int(FailInfo(fail_info))))))
    if text:
        attrs.append(attr(OID_FAIL_INFO_TEXT, core.UTF8String(text[:MAX_FAIL_TEXT])))
    return signed_data(
        None, ca.cert, ca.key, attrs, digest=_digest(req), certs=(ca.cert, *ca.chain),
    )
