"""Certificates that parsers must refuse cleanly."""

from __future__ import annotations

import base64

V3 = b"\xa0\x03\x02\x01\x02"  # [0] EXPLICIT Version INTEGER 2 (v3), the start of a TBSCertificate


def with_version(der: bytes, version: int) -> bytes:
    """The certificate with another version number (same length); cryptography refuses anything but
    v1/v3 with ``InvalidVersion``, which is not a ``ValueError``."""
    assert der.count(V3) >= 1
    return der.replace(V3, V3[:-1] + bytes([version]), 1)


def pem(der: bytes) -> str:
    return "-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(der).decode() + "-----END CERTIFICATE-----\n"
