"""SCEP message types, request record, refusal errors and the service protocol (RFC 8894)."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from typing import Protocol

from cryptography import x509

from mdm.errors import MDMError, ParseError
from mdm.pki import Identity

# messageType attribute values (RFC 8894 §3.2.1.2); GetCertInitial is RFC 8894's CertPoll.
MESSAGE_TYPES: dict[str, str] = {
    "3": "CertRep",
    "17": "RenewalReq",
    "19": "PKCSReq",
    "20": "GetCertInitial",
    "21": "GetCert",
    "22": "GetCRL",
}
MESSAGE_TYPE_CODES: dict[str, str] = {name: code for code, name in MESSAGE_TYPES.items()}
REQUEST_TYPES = frozenset({"PKCSReq", "RenewalReq", "GetCertInitial"})

# pkiStatus attribute values (RFC 8894 §3.2.1.3)
STATUS_SUCCESS = "0"
STATUS_FAILURE = "2"
STATUS_PENDING = "3"


class FailInfo(enum.IntEnum):
    """failInfo attribute values (RFC 8894 §3.2.1.4)."""

    badAlg = 0
    badMessageCheck = 1
    badRequest = 2
    badTime = 3
    badCertId = 4


@dataclass(frozen=True)
class ScepRequest:
    """A verified, decrypted SCEP request (PKIMessage)."""

    message_type: str  # "PKCSReq" | "RenewalReq" | "GetCertInitial" (RFC names)
    transaction_id: str
    sender_nonce: bytes
    csr: x509.CertificateSigningRequest | None
    challenge: str | None  # challengePassword attribute from the CSR
    signer_cert: x509.Certificate  # self-signed for PKCSReq, existing device cert for RenewalReq
    digest_algorithm: str  # "sha1" | "sha256" | "sha512" | ...
    content_encryption: str  # "aes128" | "aes256" | "3des" (also "aes192", "des")
    raw: bytes
    signing_time: dt.datetime | None = None  # signingTime signed attribute, if the client sent one


class ScepRefused(MDMError):
    """Raised by a ScepService (or the parser) to refuse a request with a failInfo."""

    status_code = 403
    code = "scep_refused"

    def __init__(self, message: str, fail_info: FailInfo, *, details: dict | None = None) -> None:
        super().__init__(message, details=details)
        self.fail_info = FailInfo(fail_info)


class ScepPending(MDMError):
    """A CertRep said PENDING (the client side of manual approval; our server never does)."""

    status_code = 202
    code = "scep_pending"


class ScepMessageError(ParseError):
    """A PKIMessage that failed after its signer and transaction were known.

    ``partial`` holds what is needed to answer with a failure CertRep (no CSR);
    it is None when the message is too broken for any signed reply.
    """

    code = "scep_bad_message"

    def __init__(
        self, message: str, fail_info: FailInfo = FailInfo.badMessageCheck,
        partial: ScepRequest | None = None,
    ) -> None:
        super().__init__(message)
        self.fail_info = FailInfo(fail_info)
        self.partial = partial


class ScepService(Protocol):
    """What the SCEP routes need from the application."""

    def ca(self) -> Identity:  # the CA identity (also signs CertRep)
        ...

    def issue(self, request: ScepRequest) -> x509.Certificate:  # may raise ScepRefused
        ...
