"""Secrets sealed at rest in the database: AES-256-GCM under a key derived from the CA key.

The key is HKDF-SHA256 of the device CA's private key (``<data_dir>/pki/ca.key``, or the
operator's CA files), so every instance that shares the CA - as they must - opens what another
sealed, and there is no second key file to back up or lose. Whoever holds the CA key can issue
identities anyway; whoever holds only a database dump opens nothing. Each seal has a fresh
96-bit nonce and is bound to its row by ``aad``: a blob copied to another row does not open.

Format: ``b"\\x01" + nonce (12) + ciphertext and tag``.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mdm.errors import MDMError
from mdm.pki import Identity

VERSION = b"\x01"
NONCE = 12


class SealBroken(MDMError):
    """A sealed value does not open: another CA key, or changed in the database."""

    status_code = 500
    code = "seal_broken"


class Sealer:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("a Sealer needs a 32-byte key")
        self._aead = AESGCM(key)

    @classmethod
    def from_ca(cls, ca: Identity, purpose: bytes) -> Sealer:
        """A sealer for ``purpose`` (one key per kind of secret) from the CA's private key."""
        secret = ca.key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())
        key = HKDF(hashes.SHA256(), 32, salt=None, info=b"schoolmdm sealed at rest: " + purpose).derive(secret)
        return cls(key)

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE)
        return VERSION + nonce + self._aead.encrypt(nonce, plaintext, aad)

    def open(self, sealed: bytes, aad: bytes) -> bytes:
        if sealed[:1] != VERSION or len(sealed) < 1 + NONCE + 16:
            raise SealBroken("sealed value of an unknown format")
        try:
            return self._aead.decrypt(sealed[1:1 + NONCE], sealed[1 + NONCE:], aad)
        except InvalidTag:
            raise SealBroken("sealed value does not open (another CA key, or changed)") from None
