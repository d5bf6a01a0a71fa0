"""API tokens: stored as SHA-256 hashes only."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets

from sqlalchemy import select, update

from app.db.models import ApiToken
from app.storage.sql_base import SQLStore
from mdm.errors import Conflict, NotFound, ValidationFailed

ROLES = ("admin", "technician", "support")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SQLTokenStore(SQLStore):
    def create(self, name: str, role: str, schools: list[str] | None, now: dt.datetime) -> str:
        if role not in ROLES:
            raise ValidationFailed(f"role must be one of {', '.join(ROLES)}")
        token = "smdm_" + secrets.token_urlsafe(32)
        with self.tx() as s:
            if s.execute(select(ApiToken.id).where(ApiToken.name == name)).first():
                raise Conflict(f"a token named {name!r} exists")
            s.add(ApiToken(name=name, token_hash=token_hash(token), role=role,
                           schools=json.dumps(schools) if schools else None, created_at=now))
        return token

    def ensure(self, name: str, token: str, role: str, now: dt.datetime) -> None:
        """Register a known token (the bootstrap admin token from settings)."""
        with self.tx() as s:
            row = s.execute(select(ApiToken).where(ApiToken.name == name)).scalar()
            if row is None:
                s.add(ApiToken(name=name, token_hash=token_hash(token), role=role, created_at=now))
            else:
                row.token_hash, row.role, row.revoked_at = token_hash(token), role, None

    def resolve(self, token: str, now: dt.datetime) -> dict | None:
        with self.tx(readonly=True) as s:
            row = s.execute(select(ApiToken).where(ApiToken.token_hash == token_hash(token),
                                                   ApiToken.revoked_at.is_(None))).scalar()
            if row is None:
                return None
            return {"name": row.name, "role": row.role, "schools": json.loads(row.schools) if row.schools else None}

    def list(self) -> list[dict]:
        with self.tx(readonly=True) as s:
            return [{"name": r.name, "role": r.role, "schools": json.loads(r.schools) if r.schools else None,
                     "created_at": r.created_at.isoformat(), "revoked": r.revoked_at is not None}
                    for r in s.execute(select(ApiToken).order_by(ApiToken.name)).scalars()]

    def revoke(self, name: str, now: dt.datetime) -> None:
        with self.tx() as s:
            res = s.execute(update(ApiToken).where(ApiToken.name == name, ApiToken.revoked_at.is_(None))
                            .values(revoked_at=now))
            if not res.rowcount:
                raise NotFound(f"no active token named {name!r}")
