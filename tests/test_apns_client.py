"""APNsClient against a respx-mocked Apple: outcomes, retries, headers, fan-out."""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import time

import httpx
import pytest
import respx

from mdm import pki
from mdm.push import APPLE_PRODUCTION, APNsClient, PushTarget
from mdm.push.apns import _retry_after

BASE = "https://apns.test"
TOPIC = "com.apple.mgmt.External.4f1b8a6e-0c1d-4d7e-9a8f-2b3c4d5e6f70"
TOKEN = bytes(range(32))
URL = f"{BASE}/3/device/{TOKEN.hex()}"
TARGET = PushTarget(udid="UDID-1", token=TOKEN, push_magic="MAGIC-1", topic=TOPIC)


@pytest.fixture(scope="module")
def identity(tmp_path_factory):
    d = tmp_path_factory.mktemp("push-identity")
    ident = pki.issue_push_identity(pki.create_ca("Test Push CA", "tests"), TOPIC)
    (d / "push.pem").write_bytes(ident.cert_pem())
    (d / "push.key").write_bytes(ident.key_pem())
    return str(d / "push.pem"), str(d / "push.key")


class Sleeps(list):
    """An injected ``sleep`` that records the delays instead of waiting."""

    async def __call__(self, delay: float) -> None:
        self.append(delay)


def push(identity, targets, base=BASE, **kw):
    sleeps = Sleeps()

    async def go():
        async with APNsClient(base, *identity, sleep=sleeps, rng=random.Random(7), **kw) as client:
            return await client.push_many(targets)

    return asyncio.run(go()), sleeps


def error(status, reason, **headers):
    return httpx.Response(status, json={"reason": reason}, headers={"apns-id": "E-1", **headers})


@respx.mock
def test_success_sends_mdm_push_with_apple_headers(identity):
    route = respx.post(URL).mock(return_value=httpx.Response(200, headers={"apns-id": "ID-1"}))
    (result,), sleeps = push(identity, [TARGET])
    assert result.ok and result.status == 200 and result.apns_id == "ID-1"
    assert not result.unregistered and result.reason is None and result.attempts == 1
    assert sleeps == []
    req = route.calls.last.request
    assert req.method == "POST" and req.url.path == f"/3/device/{TOKEN.hex()}"
    assert json.loads(req.content) == {"mdm": "MAGIC-1"}
    assert req.headers["apns-topic"] == TOPIC
    assert req.headers["apns-push-type"] == "mdm"
    assert req.headers["apns-priority"] == "10"
    assert req.headers["apns-expiration"] == "0"


@respx.mock
def test_priority_and_expiration_are_configurable(identity):
    route = respx.post(URL).mock(return_value=httpx.Response(200))
    push(identity, [TARGET], priority=5, expiration=1_900_000_000)
    req = route.calls.last.request
    assert req.headers["apns-priority"] == "5" and req.headers["apns-expiration"] == "1900000000"


@respx.mock
def test_default_base_url_is_apple_production(identity):
    route = respx.post(f"{APPLE_PRODUCTION}/3/device/{TOKEN.hex()}").mock(return_value=httpx.Response(200))
    (result,), _ = push(identity, [TARGET], base=None)
    assert result.ok and route.call_count == 1


@respx.mock
def test_410_unregistered_is_reported_and_not_retried(identity):
    route = respx.post(URL).mock(
        return_value=httpx.Response(410, json={"reason": "Unregistered", "timestamp": 1700000000000})
    )
    (result,), sleeps = push(identity, [TARGET])
    assert result.status == 410 and result.reason == "Unregistered"
    assert result.unregistered and not result.ok
    assert route.call_count == 1 and sleeps == []


@pytest.mark.parametrize("reason", ["BadDeviceToken", "DeviceTokenNotForTopic"])
@respx.mock
def test_400_bad_token_is_unregistered_and_not_retried(identity, reason):
    route = respx.post(URL).mock(return_value=error(400, reason))
    (result,), sleeps = push(identity, [TARGET])
    assert result.status == 400 and result.reason == reason and result.apns_id == "E-1"
    assert result.unregistered and not result.ok
    assert route.call_count == 1 and sleeps == []


@pytest.mark.parametrize("status,reason", [(400, "TopicDisallowed"), (403, "BadCertificate"), (413, "PayloadTooLarge")])
@respx.mock
def test_other_client_errors_are_final_but_keep_the_token(identity, status, reason):
    route = respx.post(URL).mock(return_value=error(status, reason))
    (result,), _ = push(identity, [TARGET])
    assert (result.status, result.reason, result.ok, result.unregistered) == (status, reason, False, False)
    assert route.call_count == 1


@respx.mock
def test_429_is_retried_after_retry_after(identity):
    route = respx.post(URL).mock(
        side_effect=[error(429, "TooManyRequests", **{"retry-after": "7"}), httpx.Response(200)]
    )
    (result,), sleeps = push(identity, [TARGET])
    assert result.ok and result.attempts == 2 and route.call_count == 2
    assert sleeps == [7.0]


@respx.mock
def test_503_is_retried_with_jittered_backoff(identity):
    route = respx.post(URL).mock(side_effect=[error(503, "ServiceUnavailable"), httpx.Response(200)])
    (result,), sleeps = push(identity, [TARGET], backoff_base=0.2)
    assert result.ok and route.call_count == 2
    assert len(sleeps) == 1 and 0.1 <= sleeps[0] <= 0.2


@pytest.mark.parametrize(
    "exc", [httpx.ReadTimeout("read timed out"), httpx.ConnectTimeout("connect"), httpx.RemoteProtocolError("reset")]
)
@respx.mock
def test_transport_errors_are_retried(identity, exc):
    route = respx.post(URL).mock(side_effect=[exc, httpx.Response(200, headers={"apns-id": "OK"})])
    (result,), sleeps = push(identity, [TARGET])
    assert result.ok and result.apns_id == "OK" and result.attempts == 2
    assert route.call_count == 2 and len(sleeps) == 1


@respx.mock
def test_retries_exhausted_reports_last_status_with_growing_backoff(identity):
    route = respx.post(URL).mock(return_value=error(503, "ServiceUnavailable"))
    (result,), sleeps = push(identity, [TARGET], retries=3, backoff_base=0.2)
    assert (result.status, result.reason, result.ok, result.unregistered) == (503, "ServiceUnavailable", False, False)
    assert result.attempts == 4 and route.call_count == 4
    assert len(sleeps) == 3
    for i, delay in enumerate(sleeps):
        assert 0.1 * 2**i <= delay <= 0.2 * 2**i


@respx.mock
def test_backoff_is_capped(identity):
    respx.post(URL).mock(return_value=error(500, "InternalServerError"))
    _, sleeps = push(identity, [TARGET], retries=6, backoff_base=1.0, max_backoff=4.0)
    assert len(sleeps) == 6 and max(sleeps) <= 4.0


@respx.mock
def test_transport_errors_exhausted_do_not_raise(identity):
    route = respx.post(URL).mock(side_effect=httpx.ConnectTimeout("no route"))
    (result,), sleeps = push(identity, [TARGET], retries=2)
    assert (result.status, result.apns_id, result.reason, result.ok) == (None, None, "ConnectTimeout", False)
    assert route.call_count == 3 and len(sleeps) == 2


@respx.mock
def test_unexpected_error_becomes_a_result(identity):
    respx.post(URL).mock(side_effect=ValueError("boom"))
    (result,), _ = push(identity, [TARGET])
    assert not result.ok and result.status is None and result.reason


@respx.mock
def test_many_targets_in_order_with_bounded_concurrency(identity):
    in_flight = peak = 0

    async def apple(request):
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0)
        in_flight -= 1
        token = request.url.path.rsplit("/", 1)[1]
        if token.endswith("00"):
            return httpx.Response(410, json={"reason": "Unregistered", "timestamp": 1})
        return httpx.Response(200, headers={"apns-id": token[:8]})

    route = respx.post(url__regex=rf"{BASE}/3/device/[0-9a-f]{{64}}").mock(side_effect=apple)
    targets = [PushTarget(f"U{i}", i.to_bytes(32, "big"), f"M{i}", TOPIC) for i in range(1, 601)]
    results, _ = push(identity, targets, max_concurrency=20)
    assert [r.udid for r in results] == [t.udid for t in targets]
    assert route.call_count == 600 and 1 < peak <= 20
    gone = {r.udid for r in results if r.unregistered}
    assert gone == {f"U{i}" for i in range(1, 601) if i % 256 == 0}
    assert all(r.ok for r in results if r.udid not in gone)
    assert {json.loads(c.request.content)["mdm"] for c in route.calls} == {t.push_magic for t in targets}


def test_retry_after_parsing():
    assert _retry_after(None) is None and _retry_after("") is None
    assert _retry_after("12") == 12.0 and _retry_after("-3") == 0.0
    assert _retry_after("inf") is None and _retry_after("soon") is None
    later = email.utils.formatdate(time.time() + 120, usegmt=True)
    assert 100 < _retry_after(later) <= 120


def test_constructor_validates_arguments(identity):
    with pytest.raises(ValueError):
        APNsClient(BASE, *identity, max_concurrency=0)
    with pytest.raises(ValueError):
        APNsClient(BASE, *identity, retries=-1)
