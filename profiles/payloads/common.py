"""What every payload shares: the header keys, and certificate payloads."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from profiles.ids import payload_uuid


@dataclass(frozen=True)
class Namer:
    """Names payloads inside one profile: identifier ``<profile>.<key>``, UUID derived from both."""

    identifier: str  # the profile's PayloadIdentifier
    uuid: str  # the profile's PayloadUUID

    def identifier_for(self, key: str) -> str:
        return f"{self.identifier}.{key}"

    def uuid_for(self, key: str) -> str:
        return payload_uuid(self.uuid, key)


def payload(namer: Namer, key: str, payload_type: str, display_name: str, content: dict) -> dict:
    """A payload dictionary: Apple's common keys plus ``content``."""
    return {
        "PayloadType": payload_type,
        "PayloadVersion": 1,
        "PayloadIdentifier": namer.identifier_for(key),
        "PayloadUUID": namer.uuid_for(key),
        "PayloadDisplayName": display_name,
        **content,
    }


def _is_root(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject


def certificate_key(der: bytes) -> str:
    return "cert-" + hashlib.sha256(der).hexdigest()[:16]


@lru_cache(maxsize=256)
def _certificate_info(der: bytes) -> tuple[str, str, str]:
    """(payload type, display name, key) of a DER certificate; the same anchors recur in every build."""
    cert = x509.load_der_x509_certificate(der)
    cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    name = str(cn[0].value) if cn else cert.subject.rfc4514_string()
    ptype = "com.apple.security.root" if _is_root(cert) else "com.apple.security.pkcs1"
    return ptype, name, certificate_key(der)


def certificate_payload(namer: Namer, der: bytes) -> dict:
    """``com.apple.security.root`` for a self-signed CA, ``com.apple.security.pkcs1`` otherwise."""
    ptype, name, key = _certificate_info(bytes(der))
    return payload(namer, key, ptype, name, {"PayloadCertificateFileName": f"{key}.cer", "PayloadContent": der})


def certificate_payloads(namer: Namer, ders: list[bytes]) -> list[dict]:
    """One payload per distinct certificate, in the order given."""
    seen: set[bytes] = set()
    out = []
    for der in ders:
        if der not in seen:
            seen.add(der)
            out.append(certificate_payload(namer, der))
    return out


def pem_to_ders(pem: str) -> list[bytes]:
    return [c.public_bytes(serialization.Encoding.DER) for c in x509.load_pem_x509_certificates(pem.encode())]


def pkcs12_payload(namer: Namer, key: str, display_name: str, pkcs12: bytes, password: str) -> dict:
    """An identity (key + certificate) as ``com.apple.security.pkcs12``."""
    return payload(namer, key, "com.apple.security.pkcs12", display_name,
                   {"PayloadCertificateFileName": f"{key}.p12", "PayloadContent": pkcs12,
                    "Password": password})
