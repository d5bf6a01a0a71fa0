"""SQL implementations of ChallengeStore and CertificateStore."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import insert, select, update

from app.db.models import IssuedCertificate, ScepChallenge
from app.storage.sql_base import SQLStore


def _aware(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


class SQLChallengeStore(SQLStore):
    def create(self, challenge_hash: str, school_id: str, serial: str | None,
               now: dt.datetime, expires_at: dt.datetime) -> None:
        with self.tx() as s:
            s.execute(insert(ScepChallenge).values(challenge_hash=challenge_hash, school_id=school_id,
                                                   serial=serial, created_at=now, expires_at=expires_at))

    def consume(self, challenge_hash: str, now: dt.datetime) -> tuple[str, str | None] | None:
        """Mark a challenge used; None when unknown, expired or already used (replay)."""
        with self.tx() as s:
            res = s.execute(
                update(ScepChallenge)
                .where(ScepChallenge.challenge_hash == challenge_hash, ScepChallenge.used_at.is_(None),
                       ScepChallenge.expires_at > now)
                .values(used_at=now)
                .returning(ScepChallenge.school_id, ScepChallenge.serial)
            ).first()
        return (res[0], res[1]) if res else None


class SQLCertificateStore(SQLStore):
    def record_issued(self, *, fingerprint: str, serial_number: str, subject: str, school_id: str | None,
                      issued_at: dt.datetime, not_after: dt.datetime, udid: str | None = None,
                      cert_der: bytes | None = None) -> None:
        with self.tx() as s:
            s.execute(insert(IssuedCertificate).values(
                fingerprint=fingerprint, serial_number=serial_number, subject=subject, school_id=school_id,
                issued_at=issued_at, not_after=not_after, udid=udid, cert_der=cert_der))

    def lookup(self, fingerprint: str) -> dict | None:
        with self.tx(readonly=True) as s:
            row = s.execute(select(IssuedCertificate).where(IssuedCertificate.fingerprint == fingerprint)).scalar()
            if row is None:
                return None
            return {"fingerprint": row.fingerprint, "school_id": row.school_id, "udid": row.udid,
                    "revoked_at": row.revoked_at, "not_after": _aware(row.not_after), "subject": row.subject,
                    "cert_der": row.cert_der}

    def revoke_for_device(self, udid: str, reason: str, now: dt.datetime) -> int:
        with self.tx() as s:
            res = s.execute(update(IssuedCertificate)
                            .where(IssuedCertificate.udid == udid, IssuedCertificate.revoked_at.is_(None))
                            .values(revoked_at=now, revoked_reason=reason))
            return res.rowcount or 0

    def revoke_for_fingerprint(self, fingerprint: str, reason: str, now: dt.datetime) -> int:
        with self.tx() as s:
            res = s.execute(update(IssuedCertificate)
                            .where(IssuedCertificate.fingerprint == fingerprint, IssuedCertificate.revoked_at.is_(None))
                            .values(revoked_at=now, revoked_reason=reason))
            return res.rowcount or 0
