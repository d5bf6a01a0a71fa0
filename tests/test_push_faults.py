"""Push faults end to end (outbox → push worker → APNs client → mock APNs): 5xx, 429, timeouts and
connection resets are retried with backoff, 410 marks the token invalid, and nothing is left stuck."""

from __future__ import annotations

import asyncio

import pytest

from app.db.models import Device, PushRequest
from app.services.commands import Target
from app.services.push_worker import PushWorker
from mdm.commands import new_command
from mdm.push.apns import APNsClient
from simulator.mock_apns import MockAPNsThread
from tests.support.device import TestDevice


@pytest.fixture
def apns(data_dir):
    pki = data_dir / "pki"
    mt = MockAPNsThread(str(pki / "apns-server.pem"), str(pki / "apns-server.key"), str(pki / "push-ca.pem"))
    with mt:
        yield mt


async def drain(container, apns, data_dir, rounds: int = 40) -> None:
    pki = data_dir / "pki"
    client = APNsClient(apns.url, str(pki / "push.pem"), str(pki / "push.key"), ca_bundle=str(pki / "push-ca.pem"),
                        retries=3, backoff_base=0.01, timeout=1.0)
    worker = PushWorker(container.push_queue, client, batch=100, interval=0.01)
    try:
        for _ in range(rounds):
            await worker.run_once()
            with container.sessions() as s:
                if s.query(PushRequest).count() == 0:
                    return
            await asyncio.sleep(0.05)
    finally:
        await client.aclose()


def test_faults_are_retried_and_bad_tokens_marked(client, school, container, apns, data_dir, monkeypatch):
    devs = [TestDevice(client).enroll(school["id"], school["token"]) for _ in range(6)]
    apns.mock.mark_unregistered(devs[0].token)
    apns.mock.inject("status", 2, status=503)
    apns.mock.inject("status", 1, status=429, retry_after=0)
    apns.mock.inject("reset", 1)
    apns.mock.inject("hang", 1)
    container.commands.enqueue(new_command("ProfileList"), Target(school_id=school["id"]))
    # the outbox's own backoff is seconds; let rescheduled pushes come due at once in this test
    original = container.push_queue.record_results

    def record_now(results, now):
        original(results, now)
        with container.sessions.begin() as s:
            s.query(PushRequest).update({"not_before": now})

    monkeypatch.setattr(container.push_queue, "record_results", record_now)
    asyncio.run(drain(container, apns, data_dir))
    with container.sessions() as s:
        assert s.query(PushRequest).count() == 0  # nothing stuck
        rows = {d.udid: d for d in s.query(Device)}
    assert rows[devs[0].udid].token_invalid is True and "410" in rows[devs[0].udid].last_push_status
    delivered = {p.token for p in apns.mock.pushes}
    for d in devs[1:]:
        assert rows[d.udid].token_invalid is False and rows[d.udid].last_push_status == "ok"
        assert d.token.hex() in delivered
    assert devs[0].token.hex() not in delivered
    # a device whose token is invalid is not pushed again until it sends a new TokenUpdate
    container.commands.enqueue(new_command("ProfileList"), Target(udids=(devs[0].udid,)))
    assert container.push_queue.claim(10, container.clock()) == []
    assert devs[0].checkin(devs[0].token_update_body()).status_code == 200
    container.commands.enqueue(new_command("SecurityInfo"), Target(udids=(devs[0].udid,)))
    assert [c[0] for c in container.push_queue.claim(10, container.clock())] == [devs[0].udid]
