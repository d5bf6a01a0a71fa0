"""The MDM enrollment profile (pure: returns a plist dict; signing is the caller's).

Holds three payloads, as iOS expects for SCEP-based enrollment:
``com.apple.security.root`` (our device CA), ``com.apple.security.scep``
(how to get an identity) and ``com.apple.mdm`` (where to check in, the push
topic, and which identity to sign with).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

NAMESPACE = uuid.UUID("6f1b0c1e-3c55-4c8e-9a3e-2f7c5d0e9b11")
ACCESS_RIGHTS_ALL = 8191
#: we serve neither user channels nor GetToken nor bootstrap tokens
SERVER_CAPABILITIES: list[str] = []


@dataclass(frozen=True)
class EnrollmentParams:
    org: str
    school_id: str
    school_name: str
    server_url: str  # https://host/mdm/connect
    checkin_url: str  # https://host/mdm/checkin
    scep_url: str  # https://host/scep
    topic: str
    challenge: str
    ca_cert: x509.Certificate
    serial: str | None = None
    identifier_prefix: str = "org.schoolmdm"
    use_development_apns: bool = False


def _uuid(*parts: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "/".join(parts))).upper()


def scep_subject(org: str, school_id: str, serial: str | None, challenge: str) -> list:
    """SCEP Subject as iOS expects: an array of RDNs, each an array of [OID-name, value]."""
    cn = serial or f"device-{hashlib.sha256(challenge.encode()).hexdigest()[:12]}"
    return [[["O", org]], [["OU", school_id]], [["CN", cn]]]


def enrollment_profile(p: EnrollmentParams) -> dict:
    ca_der = p.ca_cert.public_bytes(serialization.Encoding.DER)
    base = f"{p.identifier_prefix}.enroll.{p.school_id}"
    root_uuid = _uuid(base, "root")
    # the SCEP payload's UUID is per challenge so two enrollments never collide
    scep_uuid = _uuid(base, "scep", p.challenge)
    mdm_uuid = _uuid(base, "mdm")
    root = {
        "PayloadType": "com.apple.security.root",
        "PayloadVersion": 1,
        "PayloadIdentifier": f"{base}.root",
        "PayloadUUID": root_uuid,
        "PayloadDisplayName": f"{p.org} device CA",
        "PayloadContent": ca_der,
    }
    scep = {
        "PayloadType": "com.apple.security.scep",
        "PayloadVersion": 1,
        "PayloadIdentifier": f"{base}.scep",
        "PayloadUUID": scep_uuid,
        "PayloadDisplayName": "Device identity",
        "PayloadContent": {
            "URL": p.scep_url,
            "Name": f"{p.identifier_prefix}.ca",
            "Subject": scep_subject(p.org, p.school_id, p.serial, p.challenge),
            "Challenge": p.challenge,
            "Keysize": 2048,
            "Key Type": "RSA",
            "Key Usage": 5,  # signing | encryption
            "CAFingerprint": hashlib.sha256(ca_der).digest(),
        },
    }
    mdm = {
        "PayloadType": "com.apple.mdm",
        "PayloadVersion": 1,
        "PayloadIdentifier": f"{base}.mdm",
        "PayloadUUID": mdm_uuid,
        "PayloadDisplayName": f"{p.school_name} device management",
        "ServerURL": p.server_url,
        "CheckInURL": p.checkin_url,
        "Topic": p.topic,
        "IdentityCertificateUUID": scep_uuid,
        "SignMessage": True,
        "AccessRights": ACCESS_RIGHTS_ALL,
        "CheckOutWhenRemoved": True,
        "ServerCapabilities": list(SERVER_CAPABILITIES),
    }
    if p.use_development_apns:
        mdm["UseDevelopmentAPNS"] = True
    return {
        "PayloadType": "Configuration",
        "PayloadVersion": 1,
        "PayloadIdentifier": base,
        "PayloadUUID": _uuid(base, "profile", p.challenge),
        "PayloadDisplayName": f"{p.school_name} ({p.org})",
        "PayloadOrganization": p.org,
        "PayloadDescription": f"Enrolls this iPad in {p.org}'s device management for {p.school_name}.",
        "PayloadScope": "System",
        "PayloadContent": [root, scep, mdm],
    }


def find_payload(profile: dict, payload_type: str) -> dict:
    for item in profile.get("PayloadContent", []):
        if item.get("PayloadType") == payload_type:
            return item
    raise KeyError(payload_type)
