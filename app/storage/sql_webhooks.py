"""Webhook subscriptions and their delivery outbox."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import time

from sqlalchemy import delete, insert, select, update

from app.db.models import Webhook, WebhookDelivery
from app.storage.sql_base import SQLStore
from mdm.errors import Conflict, NotFound

EVENTS = ("device.enrolled", "device.checked_out", "command.completed", "job.completed")
MAX_ATTEMPTS = 10


class SQLWebhookStore(SQLStore):
    def __init__(self, sessions, cache_seconds: float = 5.0) -> None:
        super().__init__(sessions)
        self._cache: tuple[float, list[tuple[int, set[str]]]] | None = None
        self._ttl = cache_seconds

    def create(self, name: str, url: str, events: list[str], now: dt.datetime) -> dict:
        secret = "whsec_" + secrets.token_urlsafe(32)
        with self.tx() as s:
            if s.execute(select(Webhook.id).where(Webhook.name == name)).first():
                raise Conflict(f"a webhook named {name!r} exists")
            s.add(Webhook(name=name, url=url, secret=secret, events=json.dumps(events), created_at=now))
        self._cache = None
        return {"name": name, "url": url, "events": events, "secret": secret}

    def list(self) -> list[dict]:
        with self.tx() as s:
            return [{"id": w.id, "name": w.name, "url": w.url, "events": json.loads(w.events), "active": w.active,
                     "created_at": w.created_at.isoformat()}
                    for w in s.execute(select(Webhook).order_by(Webhook.name)).scalars()]

    def delete(self, name: str) -> None:
        with self.tx() as s:
            res = s.execute(delete(Webhook).where(Webhook.name == name))
            if not res.rowcount:
                raise NotFound(f"no webhook named {name!r}")
        self._cache = None

    def _subscribers(self) -> list[tuple[int, set[str]]]:
        """Active webhooks and their events; cached briefly (only a cache: any instance may add one)."""
        now = time.monotonic()
        if self._cache is None or now - self._cache[0] > self._ttl:
            with self.tx(readonly=True) as s:
                rows = s.execute(select(Webhook.id, Webhook.events).where(Webhook.active.is_(True))).all()
            self._cache = (now, [(i, set(json.loads(e))) for i, e in rows])
        return self._cache[1]

    def wants(self, event: str) -> bool:
        return any(event in ev or "*" in ev for _, ev in self._subscribers())

    def enqueue(self, events: list[tuple[str, dict]], now: dt.datetime) -> int:
        subs = self._subscribers()
        rows = []
        for event, payload in events:
            body = json.dumps({"event": event, "at": now.isoformat(), "data": payload}, default=str, sort_keys=True)
            rows += [{"webhook_id": wid, "event": event, "payload": body, "created_at": now, "attempts": 0,
                      "next_attempt_at": now} for wid, ev in subs if event in ev or "*" in ev]
        if rows:
            with self.tx() as s:
                s.execute(insert(WebhookDelivery), rows)
        return len(rows)

    def claim(self, limit: int, now: dt.datetime, lease: float = 60.0) -> list[dict]:
        with self.tx() as s:
            q = (select(WebhookDelivery.id, WebhookDelivery.event, WebhookDelivery.payload, WebhookDelivery.attempts,
                        Webhook.url, Webhook.secret)
                 .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
                 .where(WebhookDelivery.delivered_at.is_(None), WebhookDelivery.next_attempt_at.is_not(None),
                        WebhookDelivery.next_attempt_at <= now)
                 .order_by(WebhookDelivery.id).limit(limit))
            if self.dialect == "postgresql":
                q = q.with_for_update(of=WebhookDelivery, skip_locked=True)
            rows = s.execute(q).all()
            if rows:
                s.execute(update(WebhookDelivery).where(WebhookDelivery.id.in_([r.id for r in rows]))
                          .values(next_attempt_at=now + dt.timedelta(seconds=lease),
                                  attempts=WebhookDelivery.attempts + 1))
        return [{"id": r.id, "event": r.event, "payload": r.payload, "attempts": r.attempts + 1, "url": r.url,
                 "secret": r.secret} for r in rows]

    def delivered(self, delivery_id: int, now: dt.datetime) -> None:
        with self.tx() as s:
            s.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery_id)
                      .values(delivered_at=now, next_attempt_at=None, last_error=None))

    def failed(self, delivery_id: int, attempts: int, error: str, now: dt.datetime, backoff_base: float = 2.0) -> None:
        """Reschedule with exponential backoff; give up (next_attempt_at NULL) after MAX_ATTEMPTS."""
        nxt = None if attempts >= MAX_ATTEMPTS else now + dt.timedelta(seconds=min(3600, backoff_base ** attempts))
        with self.tx() as s:
            s.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery_id)
                      .values(next_attempt_at=nxt, last_error=error[:500]))

    def deliveries(self, limit: int = 100) -> list[dict]:
        with self.tx() as s:
            rows = s.execute(select(WebhookDelivery).order_by(WebhookDelivery.id.desc()).limit(limit)).scalars()
            return [{"id": d.id, "event": d.event, "attempts": d.attempts,
                     "delivered_at": d.delivered_at.isoformat() if d.delivered_at else None,
                     "next_attempt_at": d.next_attempt_at.isoformat() if d.next_attempt_at else None,
                     "last_error": d.last_error} for d in rows]
