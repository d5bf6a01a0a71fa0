"""Background work: APNs pushes, webhook delivery, inventory refresh, retention.

``schoolmdm serve`` runs it in-process by default (the embedded set-up);
``schoolmdm worker`` runs only this, so operators can scale the HTTP tier and
the workers separately (``SCHOOLMDM_BACKGROUND=false`` on the HTTP instances).
Every item is claimed through the database (``FOR UPDATE SKIP LOCKED``,
advisory locks for the singletons), so any number of workers do each item once.
"""

from __future__ import annotations

import asyncio


async def start_background(c) -> list[asyncio.Task]:
    from app.services.push_worker import PushWorker
    from app.services.scheduler import run_periodically
    from app.services.webhook_worker import WebhookWorker

    s = c.settings
    worker = PushWorker(c.push_queue, c.apns_client, batch=s.push_batch_size, interval=s.push_interval_seconds,
                        clock=c.clock, metrics=c.metrics)
    c.__dict__["push_worker"] = worker
    hooks = WebhookWorker(c.webhooks, clock=c.clock)
    tasks = [asyncio.create_task(worker.run(), name="push-worker"),
             asyncio.create_task(hooks.run(), name="webhook-worker")]
    if s.inventory_interval_seconds > 0:
        tasks.append(asyncio.create_task(
            run_periodically(c.inventory_refresh.run_once, s.inventory_interval_seconds, "inventory refresh"),
            name="inventory-refresh"))
    if s.repush_after_seconds > 0 and s.repush_interval_seconds > 0:
        tasks.append(asyncio.create_task(
            run_periodically(c.repush.run_once, s.repush_interval_seconds, "re-push"), name="re-push"))
    if s.retention_interval_seconds > 0:
        tasks.append(asyncio.create_task(
            run_periodically(c.retention.run_once, s.retention_interval_seconds, "retention"), name="retention"))
    if s.ade_sync_interval_seconds > 0:  # Apple School Manager: runs only once a server token is uploaded
        tasks.append(asyncio.create_task(
            run_periodically(c.ade_sync.run_scheduled, s.ade_sync_interval_seconds, "ADE sync"), name="ade-sync"))
    tasks.append(asyncio.create_task(  # out-of-the-box set-ups whose start failed are started again
        run_periodically(c.device_setup.start_queued, 30.0, "device set-up"), name="device-setup"))
    return tasks


async def run_worker(c, stop: asyncio.Event | None = None) -> None:
    """The ``schoolmdm worker`` process: background work only, until ``stop`` is set (or cancelled)."""
    tasks = await start_background(c)
    try:
        await (stop.wait() if stop else asyncio.Event().wait())
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if c.__dict__.get("apns_client") is not None:
            await c.apns_client.aclose()
