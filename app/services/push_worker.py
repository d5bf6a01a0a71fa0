"""Drains the push outbox to APNs. Runs inside ``serve`` or as ``schoolmdm worker``.

Never holds a database transaction across the network call: claim (short
transaction) → push over HTTP/2 → record results (short transaction).
"""

from __future__ import annotations

import asyncio
import logging

from app.services.clock import Clock, utcnow
from app.storage.interfaces import PushQueue
from mdm.push.apns import APNsClient, PushTarget

log = logging.getLogger("schoolmdm.push")


class PushWorker:
    def __init__(self, pushes: PushQueue, client: APNsClient, *, batch: int = 1000, interval: float = 0.2,
                 clock: Clock = utcnow, metrics=None) -> None:
        self.pushes = pushes
        self.client = client
        self.batch = batch
        self.interval = interval
        self.clock = clock
        self.metrics = metrics
        self._wake = asyncio.Event()
        self._stopped = False

    def wake(self) -> None:
        self._wake.set()

    async def run_once(self) -> int:
        claimed = await asyncio.to_thread(self.pushes.claim, self.batch, self.clock())
        if not claimed:
            return 0
        targets = [PushTarget(udid=u, token=t, push_magic=m, topic=tp) for u, t, m, tp in claimed]
        results = await self.client.push_many(targets)
        rows = [(r.udid, r.ok, r.unregistered, "ok" if r.ok else f"{r.status or 'error'} {r.reason or ''}".strip())
                for r in results]
        await asyncio.to_thread(self.pushes.record_results, rows, self.clock())
        if self.metrics:
            for r in results:
                self.metrics.push(r.ok, r.unregistered)
        failed = sum(1 for r in results if not r.ok)
        if failed:
            log.warning("APNs: %d of %d pushes failed", failed, len(results))
        return len(claimed)

    async def run(self) -> None:
        while not self._stopped:
            try:
                n = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # keep the worker alive through database or network trouble
                log.warning("push worker: %s", e)
                n = 0
            if n:
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.interval)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()
