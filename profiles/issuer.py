"""Issuing identities for payloads that need one (Classroom peers, EAP-TLS Wi-Fi).

Builders take an *issuer*: a callable ``issue(cn) -> (cert_der, pkcs12_bytes)``
that also carries ``anchors`` (DER certificates of the CA chain that signed the
identities, for the anchor payloads) and ``password`` (of the PKCS#12 blobs).
``CAIssuer`` is that issuer on top of an ``mdm.pki.Identity`` CA.

Identities are meant to last their validity period, not one build: an iPad
keeps the identity it was given, and re-issuing on every build costs a
certificate signature and a PKCS#12 encryption each time. ``CAIssuer(...,
store=...)`` keeps them in an ``IdentityStore`` (by CA fingerprint and common
name) and reuses a stored one while it is valid for more than ``renew_before``;
``MemoryIdentityStore`` is the in-process one, ``app.storage.sql_identities``
the database one that survives restarts and is shared by every instance.

Several issuers (threads, processes, instances) may issue for one CN at once:
``put`` stores an identity only if the stored one is still the one the issuer
saw (``replaces``), and otherwise returns the one that got there first, which
the issuer then uses - so one CN ends up with one identity.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from mdm.pki import Identity, fingerprint_der, issue_identity, utcnow


@runtime_checkable
class Issuer(Protocol):
    anchors: Sequence[bytes]
    password: str

    def __call__(self, cn: str) -> tuple[bytes, bytes]: ...


#: PKCS#12 as every iOS and iPadOS release imports it: PBES1 SHA-1/3DES for the key and the
#: certificates, a SHA-1 MAC, 2048 iterations (OpenSSL's long-standing default, the
#: ``openssl pkcs12 -legacy`` output that MDM vendors ship). AES/SHA-256 (PBES2, OpenSSL 3's
#: default) fails to import on older releases. The password travels in the same payload, so
#: the iterations protect nothing here and 1 would cut the ~3 ms per identity to ~0.5 ms; it
#: stays 2048 because that is the setting known to import, a lower count cannot be checked
#: without devices, and with an ``IdentityStore`` the cost is paid once per identity anyway.
PKCS12_KDF_ROUNDS = 2048


def pkcs12_bytes(identity: Identity, password: str, *, name: str | None = None) -> bytes:
    """PKCS#12 with the key, its certificate and the chain (see ``PKCS12_KDF_ROUNDS``)."""
    enc = (serialization.PrivateFormat.PKCS12.encryption_builder()
           .kdf_rounds(PKCS12_KDF_ROUNDS)
           .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
           .hmac_hash(hashes.SHA1())
           .build(password.encode()))
    return pkcs12.serialize_key_and_certificates(
        (name or "identity").encode(), identity.key, identity.cert, list(identity.chain) or None, enc)


@dataclass(frozen=True)
class IssuedIdentity:
    """An issued identity as payloads carry it."""

    cert_der: bytes
    pkcs12: bytes
    password: str  # of ``pkcs12``
    not_after: dt.datetime  # of the certificate, timezone-aware


class IdentityStore(Protocol):
    """Where issued identities are kept between builds, by CA fingerprint and common name."""

    def get(self, ca_fingerprint: str, cn: str) -> IssuedIdentity | None: ...

    def get_all(self, ca_fingerprint: str) -> dict[str, IssuedIdentity]:
        """Every identity stored for the CA, by common name (one read for a whole build)."""
        ...

    def put(self, ca_fingerprint: str, cn: str, identity: IssuedIdentity, *,
            replaces: bytes | None = None) -> IssuedIdentity:
        """Store ``identity`` if the CN's stored identity is the certificate ``replaces`` (None:
        there is none) and return it; otherwise keep the stored one and return that."""
        ...


class MemoryIdentityStore:
    """An ``IdentityStore`` in this process's memory, thread-safe, holding at most ``max_entries``
    (the least recently used go first). Keyed by CA fingerprint too, so issuers of different
    CAs can share one."""

    def __init__(self, max_entries: int = 20_000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str], IssuedIdentity] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, ca_fingerprint: str, cn: str) -> IssuedIdentity | None:
        with self._lock:
            found = self._entries.get((ca_fingerprint, cn))
            if found is not None:
                self._entries.move_to_end((ca_fingerprint, cn))
            return found

    def get_all(self, ca_fingerprint: str) -> dict[str, IssuedIdentity]:
        with self._lock:
            return {cn: ident for (fp, cn), ident in self._entries.items() if fp == ca_fingerprint}

    def put(self, ca_fingerprint: str, cn: str, identity: IssuedIdentity, *,
            replaces: bytes | None = None) -> IssuedIdentity:
        with self._lock:
            current = self._entries.get((ca_fingerprint, cn))
            if current is None or current.cert_der == replaces:
                self._entries[(ca_fingerprint, cn)] = current = identity
            self._entries.move_to_end((ca_fingerprint, cn))
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
            return current

    def __len__(self) -> int:
        return len(self._entries)


def derived_password(ca: Identity) -> str:
    """A PKCS#12 password that stays the same for a CA (an HMAC keyed with its private key), so
    identities kept in a store open with the password of the next issuer of that CA."""
    secret = ca.key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    digest = hmac.new(secret, b"schoolmdm profiles.issuer pkcs12 password", hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:18]).decode()


class CAIssuer:
    """Issue identities from a CA held in memory (``mdm.pki.Identity``).

    ``cache=True`` (default) returns the same identity for the same CN for the
    life of this issuer, so repeated builds in one process produce identical
    bytes. ``store`` keeps identities beyond this issuer: one found there for
    the CN, of this CA and password, is reused until ``renew_before`` its
    expiry (then a new one is issued and stored). The store is read once, on
    the first call (``get_all``): an issuer serves one build. With a store and no
    ``password`` the password is derived from the CA key (``derived_password``).
    ``key`` reuses one private key for every identity, which makes issuing
    cheap (tests, benchmarks); production leaves it ``None``.
    """

    def __init__(self, ca: Identity, *, org: str | None = None, days: int = 730,
                 password: str | None = None, key: rsa.RSAPrivateKey | None = None,
                 cache: bool = True, store: IdentityStore | None = None,
                 renew_before: dt.timedelta = dt.timedelta(days=60),
                 clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.ca = ca
        self.org = org
        self.days = days
        self.password = password or (derived_password(ca) if store is not None else secrets.token_urlsafe(18))
        self.key = key
        self.cache = cache
        self.store = store
        self.renew_before = renew_before
        self.clock = clock
        self.ca_fingerprint = fingerprint_der(ca.cert_der)
        self.issued = 0  # identities this issuer created (not reused)
        self._issued: dict[str, tuple[bytes, bytes]] = {}
        self._stored: dict[str, IssuedIdentity] | None = None  # the store's identities of this CA
        self.anchors: tuple[bytes, ...] = (ca.cert_der, *(
            c.public_bytes(serialization.Encoding.DER) for c in ca.chain))

    def __call__(self, cn: str) -> tuple[bytes, bytes]:
        if self.cache and cn in self._issued:
            return self._issued[cn]
        if self.store is None:
            ident = self._issue(cn)
        else:
            ident = self.load().get(cn)
            if ident is None or not self._reusable(ident):
                ident = self._issue_and_keep(cn, ident)
        out = (ident.cert_der, ident.pkcs12)
        if self.cache:
            self._issued[cn] = out
        return out

    def load(self) -> dict[str, IssuedIdentity]:
        """The store's identities of this CA, read on the first call (or ``{}`` without a store)."""
        if self._stored is None:
            self._stored = self.store.get_all(self.ca_fingerprint) if self.store is not None else {}
        return self._stored

    def _issue_and_keep(self, cn: str, stale: IssuedIdentity | None) -> IssuedIdentity:
        """Issue for ``cn`` and store it - or, when another issuer stored one for the CN first
        that this one can use, use that instead (the one just issued is dropped)."""
        ident = self._issue(cn)
        replaces = stale.cert_der if stale is not None else None
        for _ in range(3):
            kept = self.store.put(self.ca_fingerprint, cn, ident, replaces=replaces)
            if kept.cert_der == ident.cert_der or self._reusable(kept):
                ident = kept
                break
            replaces = kept.cert_der  # stored meanwhile but of no use here (another password): replace it
        self._stored[cn] = ident
        return ident

    def _reusable(self, stored: IssuedIdentity) -> bool:
        return stored.password == self.password and stored.not_after - self.clock() > self.renew_before

    def _issue(self, cn: str) -> IssuedIdentity:
        ident = issue_identity(self.ca, cn, org=self.org, days=self.days, key=self.key)
        ident = Identity(ident.cert, ident.key, (self.ca.cert, *self.ca.chain))
        self.issued += 1
        return IssuedIdentity(ident.cert_der, pkcs12_bytes(ident, self.password, name=cn), self.password,
                              ident.cert.not_valid_after_utc)


def anchors_of(issuer: Issuer) -> list[bytes]:
    anchors = list(getattr(issuer, "anchors", ()) or ())
    if not anchors or not isinstance(getattr(issuer, "password", None), str):
        raise TypeError("an issuer needs .anchors (DER certificates of its CA chain) and "
                        ".password (of the PKCS#12 it returns); see profiles.issuer.CAIssuer")
    return anchors


__all__: Sequence[str] = ("CAIssuer", "IdentityStore", "IssuedIdentity", "Issuer", "MemoryIdentityStore",
                          "anchors_of", "derived_password", "pkcs12_bytes")
