"""Issuing identities for payloads that need one (Classroom peers, EAP-TLS Wi-Fi).

Builders take an *issuer*: a callable ``issue(cn) -> (cert_der, pkcs12_bytes)``
that also carries ``anchors`` (DER certificates of the CA chain that signed the
identities, for the anchor payloads) and ``password`` (of the PKCS#12 blobs).
``CAIssuer`` is that issuer on top of an ``mdm.pki.Identity`` CA.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from mdm.pki import Identity, issue_identity


@runtime_checkable
class Issuer(Protocol):
    anchors: Sequence[bytes]
    password: str

    def __call__(self, cn: str) -> tuple[bytes, bytes]: ...


def pkcs12_bytes(identity: Identity, password: str, *, name: str | None = None) -> bytes:
    """PKCS#12 with the key, its certificate and the chain.

    Encrypted with PBES1 SHA1/3DES and a SHA-1 MAC: what every iOS version
    imports (AES-based PKCS#12 fails on older Apple releases).
    """
    enc = (serialization.PrivateFormat.PKCS12.encryption_builder()
           .kdf_rounds(2048)  # OpenSSL's default; the blob travels inside a signed profile
           .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
           .hmac_hash(hashes.SHA1())
           .build(password.encode()))
    return pkcs12.serialize_key_and_certificates(
        (name or "identity").encode(), identity.key, identity.cert, list(identity.chain) or None, enc)


class CAIssuer:
    """Issue identities from a CA held in memory (``mdm.pki.Identity``).

    ``cache=True`` (default) returns the same identity for the same CN for the
    life of this issuer, so repeated builds in one process produce identical
    bytes. ``key`` reuses one private key for every identity, which makes
    issuing cheap (tests, benchmarks); production leaves it ``None``.
    """

    def __init__(self, ca: Identity, *, org: str | None = None, days: int = 730,
                 password: str | None = None, key: rsa.RSAPrivateKey | None = None,
                 cache: bool = True) -> None:
        self.ca = ca
        self.org = org
        self.days = days
        self.password = password or secrets.token_urlsafe(18)
        self.key = key
        self.cache = cache
        self._issued: dict[str, tuple[bytes, bytes]] = {}
        self.anchors: tuple[bytes, ...] = (ca.cert_der, *(
            c.public_bytes(serialization.Encoding.DER) for c in ca.chain))

    def __call__(self, cn: str) -> tuple[bytes, bytes]:
        if self.cache and cn in self._issued:
            return self._issued[cn]
        ident = issue_identity(self.ca, cn, org=self.org, days=self.days, key=self.key)
        ident = Identity(ident.cert, ident.key, (self.ca.cert, *self.ca.chain))
        out = (ident.cert_der, pkcs12_bytes(ident, self.password, name=cn))
        if self.cache:
            self._issued[cn] = out
        return out


def anchors_of(issuer: Issuer) -> list[bytes]:
    anchors = list(getattr(issuer, "anchors", ()) or ())
    if not anchors or not isinstance(getattr(issuer, "password", None), str):
        raise TypeError("an issuer needs .anchors (DER certificates of its CA chain) and "
                        ".password (of the PKCS#12 it returns); see profiles.issuer.CAIssuer")
    return anchors


__all__: Sequence[str] = ("CAIssuer", "Issuer", "anchors_of", "pkcs12_bytes")
