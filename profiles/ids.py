"""Deterministic identifiers: the same (city, school, role, profile) always yields the same ids.

iOS replaces an installed profile when a new one arrives with the same
``PayloadIdentifier``; payloads inside are updated in place when their
``PayloadIdentifier`` and ``PayloadUUID`` match. Deriving both from names
(UUIDv5) makes every rebuild a clean replacement instead of a second copy.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from functools import lru_cache

#: namespace of every UUID schoolmdm derives for blueprint profiles (fixed forever)
NAMESPACE = uuid.UUID("3d0f5b7e-61a2-4c1e-8f43-2b9c7a5e4d10")

_SLUG = re.compile(r"[^a-z0-9-]+")


_NAMESPACE_BYTES = NAMESPACE.bytes


def det_uuid(*parts: str) -> str:
    """Upper-case UUIDv5 of the parts (Apple prints UUIDs upper-case).

    ``str(uuid.uuid5(NAMESPACE, "\\x1f".join(parts))).upper()``, computed without the UUID
    object: SHA-1 of namespace + name, version 5 and the RFC 4122 variant set in bytes 6 and 8.
    """
    d = bytearray(hashlib.sha1(_NAMESPACE_BYTES + "\x1f".join(parts).encode()).digest()[:16])
    d[6] = d[6] & 0x0F | 0x50
    d[8] = d[8] & 0x3F | 0x80
    h = d.hex().upper()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@lru_cache(maxsize=4096)
def slug(text: str) -> str:
    """A reverse-DNS-safe component: lower case, [a-z0-9-] only, never empty."""
    s = _SLUG.sub("-", text.lower()).strip("-")
    return s or "x"


def profile_identifier(prefix: str, school_id: str, role: str, name: str) -> str:
    return f"{prefix}.{slug(school_id)}.{role}.{name}"


def profile_uuid(city: str, school_id: str, role: str, name: str) -> str:
    return det_uuid("profile", city, school_id, role, name)


def payload_uuid(profile_uuid_: str, key: str) -> str:
    """UUID of one payload inside a profile; ``key`` names it within the profile."""
    return det_uuid("payload", profile_uuid_, key)


def organisation_uuid(city: str) -> str:
    """Classroom's OrganizationUUID: one per city so every device in it can talk to each other."""
    return det_uuid("classroom-organisation", city)
