"""Webhooks: HMAC-signed JSON events delivered from the outbox, retried with backoff."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import httpx

from app.services.webhook_worker import WebhookWorker, verify
from mdm.checkin import build_checkin
from tests.support.device import TestDevice


class Receiver:
    """An httpx transport standing in for the integrator's endpoint."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.got: list[tuple[dict, bytes]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.fail_first:
            self.fail_first -= 1
            return httpx.Response(503)
        self.got.append((dict(request.headers), request.content))
        return httpx.Response(204)


def drain(container, receiver, *, now=None) -> int:
    clock = (lambda: now) if now else container.clock
    worker = WebhookWorker(container.webhooks, http=httpx.AsyncClient(transport=httpx.MockTransport(receiver)),
                           clock=clock)

    async def go():
        try:
            return await worker.run_once()
        finally:
            await worker.aclose()

    return asyncio.run(go())


def test_events_are_signed_and_delivered(api, client, school, container):
    created = api.post("/api/v1/webhooks", json={"name": "siem", "url": "https://hooks.example.org/mdm",
                                                  "events": ["*"]}).json()
    secret = created["secret"]
    assert secret.startswith("whsec_")
    assert "secret" not in json.dumps(api.get("/api/v1/webhooks").json())
    container.webhooks._cache = None
    dev = TestDevice(client).enroll(school["id"], school["token"])
    r = api.post("/api/v1/commands", json={"request_type": "ProfileList", "devices": [dev.udid]}).json()
    dev.connect("Idle")
    dev.connect("Acknowledged", r["command_uuid"], ProfileList=[])
    rec = Receiver()
    assert drain(container, rec) == 3
    events = {}
    for headers, body in rec.got:
        assert verify(secret, body, headers["x-schoolmdm-signature"])
        assert not verify("whsec_wrong", body, headers["x-schoolmdm-signature"])
        doc = json.loads(body)
        events[doc["event"]] = doc["data"]
        assert headers["x-schoolmdm-event"] == doc["event"]
    assert events["device.enrolled"]["udid"] == dev.udid
    assert events["command.completed"]["status"] == "acknowledged"
    assert events["job.completed"]["id"] == r["job"]["id"] and events["job.completed"]["counts"]["acknowledged"] == 1
    assert drain(container, rec) == 0  # delivered once


def test_failed_deliveries_are_retried_with_backoff(api, client, school, container):
    api.post("/api/v1/webhooks", json={"name": "ops", "url": "https://hooks.example.org/x",
                                       "events": ["device.checked_out"]})
    container.webhooks._cache = None
    dev = TestDevice(client).enroll(school["id"], school["token"])
    dev.checkin(build_checkin("CheckOut", dev.udid, Topic=dev.topic))
    rec = Receiver(fail_first=1)
    assert drain(container, rec) == 1 and rec.got == []
    d = api.get("/api/v1/webhooks/deliveries").json()["items"][0]
    assert d["attempts"] == 1 and d["last_error"] == "HTTP 503" and d["next_attempt_at"]
    assert drain(container, rec) == 0  # not due yet
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=10)
    assert drain(container, rec, now=later) == 1
    assert json.loads(rec.got[0][1])["event"] == "device.checked_out"


def test_webhook_validation(api):
    assert api.post("/api/v1/webhooks", json={"name": "x", "url": "ftp://x", "events": ["*"]}).status_code == 422
    assert api.post("/api/v1/webhooks", json={"name": "x", "url": "https://x", "events": ["boom"]}).status_code == 422
    assert api.delete("/api/v1/webhooks/nope").status_code == 404
