"""APNsClient <-> MockAPNs over real TLS + HTTP/2 on loopback, with a dev PKI from mdm.pki."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from mdm import pki
from mdm.push import APNsClient, PushTarget
from simulator.mock_apns import MockAPNs, MockAPNsThread, follow_feed

TOPIC = "com.apple.mgmt.External.0d9c1f2e-3a4b-4c5d-8e6f-7a8b9c0d1e2f"


def _write(d, name, ident):
    (d / f"{name}.pem").write_bytes(ident.cert_pem())
    (d / f"{name}.key").write_bytes(ident.key_pem())
    return str(d / f"{name}.pem"), str(d / f"{name}.key")


@pytest.fixture(scope="module")
def pki_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("mock-apns-pki")
    tls_ca = pki.create_ca("Dev TLS CA", "schoolmdm dev")
    push_ca = pki.create_ca("Dev Apple Push CA", "schoolmdm dev")
    other_ca = pki.create_ca("Someone Else", "elsewhere")
    (d / "tls-ca.pem").write_bytes(tls_ca.cert_pem())
    (d / "push-ca.pem").write_bytes(push_ca.cert_pem())
    return {
        "server": _write(d, "server", pki.issue_tls_server(tls_ca, ["localhost"], ["127.0.0.1"])),
        "push": _write(d, "push", pki.issue_push_identity(push_ca, TOPIC)),
        "stranger": _write(d, "stranger", pki.issue_push_identity(other_ca, TOPIC)),
        "tls_ca": str(d / "tls-ca.pem"),
        "push_ca": str(d / "push-ca.pem"),
    }


class Sleeps(list):
    async def __call__(self, delay: float) -> None:
        self.append(delay)


def target(i: int, topic: str = TOPIC) -> PushTarget:
    return PushTarget(f"UDID-{i}", (0xA0000000 + i).to_bytes(32, "big"), f"magic-{i}", topic)


@pytest.fixture
def mock(pki_files):
    server = MockAPNsThread(*pki_files["server"], pki_files["push_ca"])
    with server:
        yield server


def apns(pki_files, mock, identity="push", **kw) -> APNsClient:
    kw.setdefault("sleep", Sleeps())
    return APNsClient(mock.url, *pki_files[identity], ca_bundle=pki_files["tls_ca"], **kw)


def push_many(pki_files, mock, targets, **kw):
    async def go():
        async with apns(pki_files, mock, **kw) as c:
            return await c.push_many(targets)

    return asyncio.run(go())


def feed(pki_files, mock, after=0, wait=0.0):
    async def go():
        async with httpx.AsyncClient(http2=True, verify=ssl.create_default_context(cafile=pki_files["tls_ca"])) as c:
            r = await c.get(f"{mock.url}/_mock/feed", params={"after": after, "wait": wait})
            assert r.http_version == "HTTP/2"
            return r.status_code, r.json()

    return asyncio.run(go())


def test_pushes_are_recorded_and_visible_in_the_feed(pki_files, mock):
    results = push_many(pki_files, mock, [target(1), target(2)])
    assert all(r.ok and r.status == 200 and r.apns_id for r in results)
    assert [p.seq for p in mock.mock.pushes] == [1, 2]
    status, body = feed(pki_files, mock)
    assert status == 200 and body["last"] == 2
    got = sorted(body["pushes"], key=lambda p: p["token"])
    assert [p["token"] for p in got] == [target(1).token.hex(), target(2).token.hex()]
    assert {p["topic"] for p in got} == {TOPIC}
    assert sorted(p["payload"]["mdm"] for p in got) == ["magic-1", "magic-2"]
    assert {p["apns_id"] for p in got} == {r.apns_id for r in results}
    status, body = feed(pki_files, mock, after=2)
    assert body == {"pushes": [], "last": 2}


def test_feed_long_poll_wakes_on_a_push_and_subscribers_are_called(pki_files, mock):
    seen = []
    mock.mock.subscribe(seen.append)

    async def go():
        verify = ssl.create_default_context(cafile=pki_files["tls_ca"])
        async with httpx.AsyncClient(http2=True, verify=verify) as http, apns(pki_files, mock) as pusher:
            follower = follow_feed(http, mock.url, after=0, wait=30)
            first = asyncio.ensure_future(follower.__anext__())
            await asyncio.sleep(0.05)
            assert not first.done()
            (result,) = await pusher.push_many([target(7)])
            got = await asyncio.wait_for(first, 30)
            await follower.aclose()
            return result, got

    result, got = asyncio.run(go())
    assert result.ok and got["seq"] == 1 and got["payload"] == {"mdm": "magic-7"}
    assert [p.token for p in seen] == [target(7).token.hex()]


def test_wrong_topic_is_topic_disallowed(pki_files, mock):
    (result,) = push_many(pki_files, mock, [target(1, topic="com.apple.mgmt.External.someone-else")])
    assert (result.status, result.reason, result.ok, result.unregistered) == (400, "TopicDisallowed", False, False)
    assert mock.mock.pushes == []


def test_no_client_certificate_is_refused(pki_files, mock):
    async def go():
        async with httpx.AsyncClient(http2=True, verify=ssl.create_default_context(cafile=pki_files["tls_ca"])) as c:
            return await c.post(
                f"{mock.url}/3/device/{'ab' * 32}", content=b'{"mdm":"x"}',
                headers={"apns-topic": TOPIC, "apns-push-type": "mdm"},
            )

    r = asyncio.run(go())
    assert r.status_code == 403 and r.json()["reason"] == "MissingProviderToken"
    assert mock.mock.pushes == []


def test_client_certificate_from_another_ca_fails_the_handshake(pki_files, mock):
    (result,) = push_many(pki_files, mock, [target(1)], identity="stranger", retries=1)
    assert not result.ok and result.status is None and result.attempts == 2
    assert mock.mock.pushes == []


def test_unregistered_token_gets_410_and_is_reported(pki_files, mock):
    mock.mock.mark_unregistered(target(3).token, timestamp_ms=1_700_000_000_000)
    results = push_many(pki_files, mock, [target(3), target(4)])
    assert (results[0].status, results[0].reason, results[0].unregistered) == (410, "Unregistered", True)
    assert results[1].ok
    assert [p.token for p in mock.mock.pushes] == [target(4).token.hex()]


@pytest.mark.parametrize(
    "path,headers,body,status,reason",
    [
        ("/3/device/abcd", {"apns-push-type": "mdm"}, b'{"mdm":"x"}', 400, "BadDeviceToken"),
        (f"/3/device/{'ab' * 32}", {"apns-push-type": "alert"}, b'{"mdm":"x"}', 400, "InvalidPushType"),
        (f"/3/device/{'ab' * 32}", {"apns-push-type": "mdm"}, b"", 400, "PayloadEmpty"),
        (f"/3/device/{'ab' * 32}", {"apns-push-type": "mdm"}, b'{"aps":{}}', 400, "BadMessage"),
        (f"/3/device/{'ab' * 32}", {"apns-push-type": "mdm"}, b"not json", 400, "BadMessage"),
    ],
)
def test_mock_validates_requests_like_apple(pki_files, mock, path, headers, body, status, reason):
    ctx = ssl.create_default_context(cafile=pki_files["tls_ca"])
    ctx.load_cert_chain(*pki_files["push"])

    async def go():
        async with httpx.AsyncClient(http2=True, verify=ctx) as c:
            return await c.post(f"{mock.url}{path}", content=body, headers={"apns-topic": TOPIC, **headers})

    r = asyncio.run(go())
    assert (r.status_code, r.json()["reason"]) == (status, reason)
    assert r.headers["apns-id"]


def test_injected_503_and_429_are_retried(pki_files, mock):
    mock.mock.inject("status", 2, status=503)
    mock.mock.inject("status", status=429, reason="TooManyRequests", retry_after=3)
    sleeps = Sleeps()
    (result,) = push_many(pki_files, mock, [target(5)], sleep=sleeps)
    assert result.ok and result.attempts == 4
    assert sleeps[2] == 3.0
    assert mock.mock.stats()["counts"]["503"] == 2 and len(mock.mock.pushes) == 1


@pytest.mark.parametrize("kind", ["reset", "rst_stream"])
def test_connection_and_stream_resets_are_retried(pki_files, mock, kind):
    mock.mock.inject(kind)
    (result,) = push_many(pki_files, mock, [target(6)])
    assert result.ok and result.attempts == 2
    assert [p.token for p in mock.mock.pushes] == [target(6).token.hex()]


def test_hang_past_timeout_is_retried(pki_files, mock):
    mock.mock.inject("hang")
    (result,) = push_many(pki_files, mock, [target(8)], timeout=0.5)
    assert result.ok and result.attempts == 2


def test_thousand_targets_over_one_connection(pki_files, mock):
    targets = [target(i) for i in range(1000)]
    results = push_many(pki_files, mock, targets)
    assert all(r.ok for r in results) and len(results) == 1000
    assert mock.mock.counts["connections"] == 1
    assert sorted(p.seq for p in mock.mock.pushes) == list(range(1, 1001))
    assert {p.token for p in mock.mock.pushes} == {t.token.hex() for t in targets}
    status, body = feed(pki_files, mock, after=0)
    assert status == 200 and len(body["pushes"]) == 1000 and body["last"] == 1000
    status, body = feed(pki_files, mock, after=990)
    assert [p["seq"] for p in body["pushes"]] == list(range(991, 1001))


def test_connection_reset_mid_batch_redelivers_in_flight_pushes(pki_files, mock):
    mock.mock.inject("pass", 200)
    mock.mock.inject("reset")
    targets = [target(i) for i in range(500)]
    results = push_many(pki_files, mock, targets)
    assert all(r.ok for r in results)
    assert mock.mock.counts["connections"] == 2 and mock.mock.counts["fault:reset"] == 1
    # at-least-once, like APNs: every device got its push (a lost reply may mean a duplicate)
    assert {p.token for p in mock.mock.pushes} == {t.token.hex() for t in targets}


def test_goaway_mid_batch_moves_the_rest_to_a_new_connection(pki_files, mock):
    mock.mock.inject("pass", 300)
    mock.mock.inject("goaway")
    targets = [target(i) for i in range(600)]
    results = push_many(pki_files, mock, targets)
    assert all(r.ok for r in results)
    assert mock.mock.counts["connections"] == 2 and mock.mock.counts["fault:goaway"] == 1
    assert {p.token for p in mock.mock.pushes} == {t.token.hex() for t in targets}


def test_stats_endpoint_counts_by_status(pki_files, mock):
    mock.mock.mark_unregistered(target(2).token)
    push_many(pki_files, mock, [target(1), target(2)])

    async def go():
        async with httpx.AsyncClient(http2=True, verify=ssl.create_default_context(cafile=pki_files["tls_ca"])) as c:
            return (await c.get(f"{mock.url}/_mock/stats")).json()

    stats = asyncio.run(go())
    assert stats["accepted"] == 1 and stats["counts"]["200"] == 1 and stats["counts"]["410"] == 1


def test_in_process_start_stop(pki_files):
    async def go():
        server = MockAPNs(*pki_files["server"], pki_files["push_ca"])
        port = await server.start("127.0.0.1", 0)
        try:
            async with APNsClient(f"https://127.0.0.1:{port}", *pki_files["push"], ca_bundle=pki_files["tls_ca"]) as c:
                (result,) = await c.push_many([target(9)])
        finally:
            await server.stop()
        return result, server.pushes

    result, pushes = asyncio.run(go())
    assert result.ok and len(pushes) == 1


def test_standalone_process(pki_files):
    proc = subprocess.Popen(
        [sys.executable, "-m", "simulator.mock_apns", "--port", "0", "--cert", pki_files["server"][0],
         "--key", pki_files["server"][1], "--client-ca", pki_files["push_ca"]],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1],
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("mock-apns listening on https://127.0.0.1:")
        url = line.split()[-1]

        async def go():
            async with APNsClient(url, *pki_files["push"], ca_bundle=pki_files["tls_ca"]) as c:
                return await c.push_many([target(10)])

        (result,) = asyncio.run(go())
        assert result.ok
    finally:
        proc.terminate()
        proc.wait(timeout=30)
