"""SQL implementation of ``profiles.issuer.IdentityStore``: issued identities kept in the database.

Every instance and every restart reuses the Classroom and EAP-TLS identities issued before, so a
rebuilt profile carries the identity the iPads already have. Private key material is sealed
(``app.storage.sealing``, AES-GCM bound to CA, CN and certificate); the certificate is not.

Concurrent first builds (two instances importing at once): the row is keyed by CA fingerprint and
CN, ``put`` inserts with ON CONFLICT DO NOTHING and, when another writer was first, reads back and
returns that writer's identity, which ``CAIssuer`` then uses. A renewal replaces the row only if it
still holds the certificate the issuer saw (compare-and-set on its SHA-256).
"""

from __future__ import annotations

import datetime as dt
import struct

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from app.db.models_identity import IssuedIdentityRow as Row
from app.storage.sealing import SealBroken, Sealer
from app.storage.sql_base import SQLStore
from mdm.errors import Conflict
from mdm.pki import Identity, fingerprint_der
from profiles.issuer import IssuedIdentity

PURPOSE = b"issued identities"


def _aware(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


def _aad(ca_fingerprint: str, cn: str, cert_sha256: str) -> bytes:
    return f"{ca_fingerprint}\n{cn}\n{cert_sha256}".encode()


class SQLIdentityStore(SQLStore):
    def __init__(self, sessions, sealer: Sealer) -> None:
        super().__init__(sessions)
        self.sealer = sealer

    @classmethod
    def for_ca(cls, sessions, ca: Identity) -> SQLIdentityStore:
        return cls(sessions, Sealer.from_ca(ca, PURPOSE))

    def get(self, ca_fingerprint: str, cn: str) -> IssuedIdentity | None:
        with self.tx(readonly=True) as s:
            row = s.get(Row, (ca_fingerprint, cn))
            return self._open(row) if row is not None else None

    def get_all(self, ca_fingerprint: str) -> dict[str, IssuedIdentity]:
        with self.tx(readonly=True) as s:
            rows = s.execute(select(Row).where(Row.ca_fingerprint == ca_fingerprint)).scalars().all()
            return {r.cn: self._open(r) for r in rows}

    def put(self, ca_fingerprint: str, cn: str, identity: IssuedIdentity, *,
            replaces: bytes | None = None) -> IssuedIdentity:
        values = self._row(ca_fingerprint, cn, identity)
        ins = (pg_insert if self.dialect == "postgresql" else sqlite_insert)(Row).values(values)
        ins = ins.on_conflict_do_nothing(index_elements=[Row.ca_fingerprint, Row.cn]).returning(Row.cn)
        with self.tx() as s:
            if replaces is not None:
                renewed = s.execute(update(Row).where(Row.ca_fingerprint == ca_fingerprint, Row.cn == cn,
                                                      Row.cert_sha256 == fingerprint_der(replaces))
                                    .values(values).returning(Row.cn)).first()
                if renewed is not None:
                    return identity
            if s.execute(ins).first() is not None:
                return identity
            first = s.get(Row, (ca_fingerprint, cn), populate_existing=True)
            if first is None:  # rows are never deleted; a concurrent delete would land here
                raise Conflict(f"identity {cn!r} changed while it was stored, build again")
            return self._open(first)

    def _row(self, ca_fingerprint: str, cn: str, identity: IssuedIdentity) -> dict:
        cert_sha256 = fingerprint_der(identity.cert_der)
        password = identity.password.encode()
        plaintext = struct.pack(">H", len(password)) + password + identity.pkcs12
        return {"ca_fingerprint": ca_fingerprint, "cn": cn, "cert_der": identity.cert_der,
                "cert_sha256": cert_sha256, "not_after": identity.not_after,
                "sealed": self.sealer.seal(plaintext, _aad(ca_fingerprint, cn, cert_sha256)),
                "issued_at": dt.datetime.now(dt.timezone.utc)}

    def _open(self, row: Row) -> IssuedIdentity:
        if fingerprint_der(row.cert_der) != row.cert_sha256:
            raise SealBroken(f"the stored certificate of {row.cn!r} is not the one sealed with its key")
        plaintext = self.sealer.open(row.sealed, _aad(row.ca_fingerprint, row.cn, row.cert_sha256))
        (n,) = struct.unpack_from(">H", plaintext)
        return IssuedIdentity(row.cert_der, plaintext[2 + n:], plaintext[2:2 + n].decode(), _aware(row.not_after))
