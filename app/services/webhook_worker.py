"""Delivers the webhook outbox: HMAC-signed JSON POSTs, retried with backoff.

Signature: ``X-Schoolmdm-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``,
so a receiver can check authenticity and reject replays by the timestamp.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time

import httpx

from app.services.clock import Clock, utcnow

log = logging.getLogger("schoolmdm.webhooks")


def sign(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, body: bytes, header: str, *, tolerance: int = 300, now: float | None = None) -> bool:
    """What a receiver does (used in tests and documented for integrators)."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        ts = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs((now or time.time()) - ts) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, body, ts), header)


class WebhookWorker:
    def __init__(self, hooks, *, http: httpx.AsyncClient | None = None, batch: int = 100, interval: float = 1.0,
                 clock: Clock = utcnow, timeout: float = 10.0) -> None:
        self.hooks = hooks
        self.http = http or httpx.AsyncClient(timeout=timeout)
        self.batch = batch
        self.interval = interval
        self.clock = clock
        self._stopped = False

    async def deliver(self, d: dict) -> None:
        body = d["payload"].encode()
        headers = {"Content-Type": "application/json", "X-Schoolmdm-Event": d["event"],
                   "X-Schoolmdm-Delivery": str(d["id"]),
                   "X-Schoolmdm-Signature": sign(d["secret"], body, int(time.time()))}
        try:
            r = await self.http.post(d["url"], content=body, headers=headers)
            ok, err = 200 <= r.status_code < 300, f"HTTP {r.status_code}"
        except httpx.HTTPError as e:
            ok, err = False, f"{type(e).__name__}: {e}"
        if ok:
            await asyncio.to_thread(self.hooks.delivered, d["id"], self.clock())
        else:
            log.warning("webhook delivery %s (%s) failed: %s", d["id"], d["event"], err)
            await asyncio.to_thread(self.hooks.failed, d["id"], d["attempts"], err, self.clock())

    async def run_once(self) -> int:
        due = await asyncio.to_thread(self.hooks.claim, self.batch, self.clock())
        await asyncio.gather(*(self.deliver(d) for d in due))
        return len(due)

    async def run(self) -> None:
        while not self._stopped:
            try:
                n = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # keep delivering through database trouble
                log.warning("webhook worker: %s", e)
                n = 0
            if not n:
                await asyncio.sleep(self.interval)

    def stop(self) -> None:
        self._stopped = True

    async def aclose(self) -> None:
        await self.http.aclose()
