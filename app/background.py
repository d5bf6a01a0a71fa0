"""Background work inside ``serve``: the push worker."""

from __future__ import annotations

import asyncio


async def start_background(c) -> list[asyncio.Task]:
    from app.services.push_worker import PushWorker

    s = c.settings
    worker = PushWorker(c.push_queue, c.apns_client, batch=s.push_batch_size, interval=s.push_interval_seconds,
                        clock=c.clock, metrics=c.metrics)
    c.__dict__["push_worker"] = worker
    return [asyncio.create_task(worker.run(), name="push-worker")]
