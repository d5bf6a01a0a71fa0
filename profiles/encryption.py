"""Profile payload encryption (Apple's ``EncryptedPayloadContent``).

Apple lets a configuration profile carry its ``PayloadContent`` array
encrypted to one device: the array is serialized as a plist, enveloped with
CMS (EnvelopedData, RSA key transport) to the device identity certificate, and
stored as ``<data>`` under ``EncryptedPayloadContent`` in place of
``PayloadContent``. The device decrypts it with its identity key. The
decrypting half is for the simulator.
"""

from __future__ import annotations

import plistlib
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.serialization import pkcs7

from mdm import plist
from mdm.errors import ParseError, ValidationFailed

_AES = {128: algorithms.AES128, 256: algorithms.AES256}


def encrypt_payload_content(
    payload_content_plist_bytes: bytes, device_cert: x509.Certificate, *, aes_bits: int = 256
) -> bytes:
    """EnvelopedData (DER, AES-CBC, RSA PKCS#1 v1.5 key transport) to ``device_cert``."""
    if aes_bits not in _AES:
        raise ValueError("aes_bits must be 128 or 256")
    if not isinstance(device_cert.public_key(), rsa.RSAPublicKey):
        raise ValidationFailed("device certificate does not carry an RSA key")
    return (
        pkcs7.PKCS7EnvelopeBuilder()
        .set_data(payload_content_plist_bytes)
        .add_recipient(device_cert)
        .set_content_encryption_algorithm(_AES[aes_bits])
        .encrypt(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])
    )


def decrypt_payload_content(der: bytes, key: rsa.RSAPrivateKey, cert: x509.Certificate) -> bytes:
    """Decrypt an EnvelopedData addressed to ``cert``; raise ParseError on any failure."""
    try:
        return pkcs7.pkcs7_decrypt_der(der, cert, key, [])
    except (ValueError, TypeError) as e:
        raise ParseError(f"cannot decrypt EncryptedPayloadContent: {e}") from None


def serialized_content(profile: dict[str, Any]) -> bytes:
    """The plaintext that ``encrypt_profile`` envelopes: the PayloadContent array as an XML plist
    (the same for every device, so a caller may compute it once per profile version)."""
    content = profile.get("PayloadContent")
    if not isinstance(content, list):
        raise ValidationFailed("profile has no PayloadContent array to encrypt")
    return plistlib.dumps(content, fmt=plistlib.FMT_XML)


def encrypt_profile(profile: dict[str, Any], device_cert: x509.Certificate, *,
                    serialized: bytes | None = None) -> dict[str, Any]:
    """Return a copy of ``profile`` with PayloadContent moved into EncryptedPayloadContent
    (``serialized``: ``serialized_content(profile)``, when the caller kept it)."""
    if "EncryptedPayloadContent" in profile:
        raise ValidationFailed("profile already has EncryptedPayloadContent")
    if serialized is None:
        serialized = serialized_content(profile)
    out = {k: v for k, v in profile.items() if k != "PayloadContent"}
    out["EncryptedPayloadContent"] = encrypt_payload_content(serialized, device_cert)
    return out


def decrypt_profile(profile: dict[str, Any], key: rsa.RSAPrivateKey, cert: x509.Certificate) -> dict[str, Any]:
    """Inverse of ``encrypt_profile``: restore PayloadContent from EncryptedPayloadContent."""
    blob = profile.get("EncryptedPayloadContent")
    if not isinstance(blob, bytes):
        raise ParseError("profile has no EncryptedPayloadContent data")
    content = plist.loads(decrypt_payload_content(blob, key, cert))
    if not isinstance(content, list):
        raise ParseError("EncryptedPayloadContent does not hold a plist array")
    out = {k: v for k, v in profile.items() if k != "EncryptedPayloadContent"}
    out["PayloadContent"] = content
    return out
