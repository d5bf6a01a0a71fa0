"""SQL implementation of PushQueue: a durable outbox of APNs pushes.

Requests coalesce per device (one row per UDID). Workers claim rows in
batches; on PostgreSQL with ``FOR UPDATE SKIP LOCKED`` so several workers
never push the same device twice.
"""

from __future__ import annotations

import datetime as dt
from typing import Iterable, Sequence

from sqlalchemy import Select, delete, literal, select, true, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from app.db.models import Device, PushRequest
from app.storage.sql_base import SQLStore

CHUNK = 5000
MAX_ATTEMPTS = 8


def _upsert(dialect: str, now: dt.datetime, udids: Select | None = None):
    """INSERT into the outbox (from ``udids``, a SELECT of UDIDs, or else per parameter row); a
    device already waiting is due now again, with its attempts reset."""
    ins = (pg_insert if dialect == "postgresql" else sqlite_insert)(PushRequest)
    if udids is not None:
        ts = PushRequest.requested_at.type
        # SQLite's parser needs a WHERE in an upsert's SELECT (else ON CONFLICT reads as a join's ON)
        rows = udids.add_columns(literal(now, ts), literal(0), literal(now, ts)).where(true())
        ins = ins.from_select(["udid", "requested_at", "attempts", "not_before"], rows)
    return ins.on_conflict_do_update(index_elements=[PushRequest.udid],
                                     set_={"requested_at": now, "not_before": now, "attempts": 0})


def request_selected(s, dialect: str, udids: Select, now: dt.datetime) -> None:
    """Request a push for every device ``udids`` (a SELECT) names, in the caller's transaction ``s``."""
    s.execute(_upsert(dialect, now, udids))


class SQLPushQueue(SQLStore):
    def request(self, udids: Iterable[str], now: dt.datetime) -> int:
        rows = [{"udid": u, "requested_at": now, "attempts": 0, "not_before": now} for u in dict.fromkeys(udids)]
        if not rows:
            return 0
        stmt = _upsert(self.dialect, now)
        with self.tx() as s:
            for i in range(0, len(rows), CHUNK):
                s.execute(stmt, rows[i : i + CHUNK])
        return len(rows)

    def claim(self, limit: int, now: dt.datetime, lease: float = 30.0) -> list[tuple[str, bytes, str, str]]:
        """Claim up to ``limit`` due pushes: (udid, token, push_magic, topic).

        A claimed row is leased (not_before moves ahead); ``record_results``
        deletes it on success or reschedules it with backoff.
        """
        with self.tx() as s:
            q = (select(PushRequest.udid).where(PushRequest.not_before <= now)
                 .order_by(PushRequest.not_before).limit(limit))
            if self.dialect == "postgresql":
                q = q.with_for_update(skip_locked=True)
            udids = list(s.execute(q).scalars())
            if not udids:
                return []
            s.execute(update(PushRequest).where(PushRequest.udid.in_(udids))
                      .values(not_before=now + dt.timedelta(seconds=lease), attempts=PushRequest.attempts + 1))
            rows = s.execute(
                select(Device.udid, Device.push_token, Device.push_magic, Device.topic)
                .where(Device.udid.in_(udids), Device.enrollment_state == "enrolled",
                       Device.token_invalid.is_(False), Device.push_token.is_not(None))
            ).all()
            pushable = {r.udid for r in rows}
            gone = [u for u in udids if u not in pushable]
            if gone:
                s.execute(delete(PushRequest).where(PushRequest.udid.in_(gone)))
        return [(r.udid, bytes.fromhex(r.push_token), r.push_magic, r.topic) for r in rows]

    def record_results(self, results: Sequence[tuple[str, bool, bool, str]], now: dt.datetime) -> None:
        """results: (udid, ok, unregistered, status text)."""
        done = [u for u, ok, unreg, _ in results if ok or unreg]
        retry = [u for u, ok, unreg, _ in results if not ok and not unreg]
        with self.tx() as s:
            if done:
                s.execute(delete(PushRequest).where(PushRequest.udid.in_(done)))
            if retry:
                attempts = dict(s.execute(select(PushRequest.udid, PushRequest.attempts)
                                          .where(PushRequest.udid.in_(retry))).all())
                for u in retry:
                    n = attempts.get(u, 1)
                    if n >= MAX_ATTEMPTS:
                        s.execute(delete(PushRequest).where(PushRequest.udid == u))
                    else:
                        s.execute(update(PushRequest).where(PushRequest.udid == u)
                                  .values(not_before=now + dt.timedelta(seconds=min(300, 2 ** n))))
            by_status: dict[str, list[str]] = {}
            for u, ok, unreg, text in results:
                by_status.setdefault(text, []).append(u)
            for text, us in by_status.items():
                for i in range(0, len(us), CHUNK):
                    s.execute(update(Device).where(Device.udid.in_(us[i : i + CHUNK]))
                              .values(last_push_at=now, last_push_status=text))
            unreg = [u for u, ok, un, _ in results if un]
            if unreg:
                s.execute(update(Device).where(Device.udid.in_(unreg)).values(token_invalid=True))
