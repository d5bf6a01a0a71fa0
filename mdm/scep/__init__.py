"""SCEP (RFC 8894): server-side PKIMessage parsing and CertRep building, and the
client side used by the fleet simulator. No web framework, database or HTTP client here.

Modules: ``model`` (records, failInfo, errors, service protocol), ``cms`` (SignedData
helpers), ``envelope`` (EnvelopedData), ``message`` (parse PKIMessage), ``certrep``
(build CertRep), ``server`` (operations), ``client`` (simulator side).
"""

from __future__ import annotations

from mdm.scep.certrep import cert_rep_failure, cert_rep_success
from mdm.scep.client import (
    build_request, make_csr, parse_cert_rep, request_sender_nonce, self_signed,
    transaction_id_for,
)
from mdm.scep.message import parse_pki_message
from mdm.scep.server import (
    CA_CAPS, CA_CERT_TYPE, CA_RA_CERT_TYPE, PKI_MESSAGE_TYPE, ca_caps, ca_cert_reply,
    handle_pki_operation,
)
from mdm.scep.model import (
    FailInfo, ScepMessageError, ScepPending, ScepRefused, ScepRequest, ScepService,
)

__all__ = [
    "CA_CAPS", "CA_CERT_TYPE", "CA_RA_CERT_TYPE", "PKI_MESSAGE_TYPE",
    "FailInfo", "ScepMessageError", "ScepPending", "ScepRefused", "ScepRequest", "ScepService",
    "build_request", "ca_caps", "ca_cert_reply", "cert_rep_failure", "cert_rep_success",
    "handle_pki_operation", "make_csr", "parse_cert_rep", "parse_pki_message",
    "request_sender_nonce", "self_signed", "transaction_id_for",
]
