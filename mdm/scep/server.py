"""Server side of SCEP operations, without any web framework: GetCACaps, GetCACert and
PKIOperation (parse -> ScepService.issue -> CertRep)."""

from __future__ import annotations

import datetime as dt

from mdm.errors import MDMError
from mdm.pki import Identity
from mdm.scep.certrep import cert_rep_failure, cert_rep_success
from mdm.scep.cms import certs_only, der
from mdm.scep.message import parse_pki_message
from mdm.scep.model import FailInfo, ScepMessageError, ScepRefused, ScepService

# What we advertise (RFC 8894 §3.5.2). SHA-1 and DES3 stay for old clients.
CA_CAPS: tuple[str, ...] = (
    "POSTPKIOperation", "SHA-256", "SHA-512", "AES", "SCEPStandard", "Renewal", "SHA-1", "DES3",
)
CA_CERT_TYPE = "application/x-x509-ca-cert"
CA_RA_CERT_TYPE = "application/x-x509-ca-ra-cert"
PKI_MESSAGE_TYPE = "application/x-pki-message"


def ca_caps() -> bytes:
    return ("\n".join(CA_CAPS) + "\n").encode("ascii")


def ca_cert_reply(ca: Identity) -> tuple[bytes, str]:
    """GetCACert body and content type: the bare CA certificate, or a certs-only
    SignedData of the CA and its chain when the CA is an intermediate."""
    if ca.chain:
        return certs_only([ca.cert, *ca.chain]), CA_RA_CERT_TYPE
    return der(ca.cert), CA_CERT_TYPE


def handle_pki_operation(
    data: bytes,
    service: ScepService,
    *,
    now: dt.datetime | None = None,
    max_clock_skew: dt.timedelta | None = None,
) -> bytes:
    """Answer one PKIOperation with a DER CertRep.

    A refusal (ScepRefused or another MDMError from the service) or a message that
    fails after its signer and transaction are known gets a FAILURE CertRep with
    failInfo. Raises ParseError only when no signed reply is possible.
    """
    ca = service.ca()
    try:
        req = parse_pki_message(data, ca, now=now, max_clock_skew=max_clock_skew)
    except ScepMessageError as e:
        if e.partial is None:
            raise
        return cert_rep_failure(e.partial, e.fail_info, ca, text=e.message)
    try:
        issued = service.issue(req)
    except ScepRefused as e:
        return cert_rep_failure(req, e.fail_info, ca, text=e.message)
    except MDMError as e:
        return cert_rep_failure(req, FailInfo.badRequest, ca, text=e.message)
    return cert_rep_success(req, issued, ca)
