"""Background work inside ``serve``: the push worker."""

from __future__ import annotations

import asyncio


async def start_background(c) -> list[asyncio.Task]:
    from app.services.push_worker import PushWorker

    s = c.settings
    worker = PushWorker(c.push_queue, c.apns_client, batch=s.push_batch_size, interval=s.push_interval_seconds,
                        clock=c.clock, metrics=c.metrics)
    c.__dict__["push_worker"] = worker
    from app.services.webhook_worker import WebhookWorker

    hooks = WebhookWorker(c.webhooks, clock=c.clock)
    tasks = [asyncio.create_task(worker.run(), name="push-worker"),
             asyncio.create_task(hooks.run(), name="webhook-worker")]
    if s.inventory_interval_seconds > 0:
        from app.services.scheduler import run_periodically

        tasks.append(asyncio.create_task(
            run_periodically(c.inventory_refresh.run_once, s.inventory_interval_seconds, "inventory refresh"),
            name="inventory-refresh"))
    return tasks
