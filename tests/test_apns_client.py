"""APNsClient against the real mock APNs (HTTP/2 over TLS on loopback): outcomes, retries, headers, fan-out.

Each test runs the mock on the test's own event loop (``RecordingMock`` also keeps every
request's raw headers and body, and can hold its replies back to expose concurrency), and
backoff sleeps are recorded instead of waited for.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import socket
import time

import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import pytest

from mdm import pki
from mdm.push import APPLE_PRODUCTION, APNsClient, PushTarget
from mdm.push.apns import _retry_after
from mdm.push.h2conn import FastH2Connection
from simulator.mock_apns import MockAPNs

TOPIC = "com.apple.mgmt.External.4f1b8a6e-0c1d-4d7e-9a8f-2b3c4d5e6f70"
TOKEN = bytes(range(32))
TARGET = PushTarget(udid="UDID-1", token=TOKEN, push_magic="MAGIC-1", topic=TOPIC)


@pytest.fixture(scope="module")
def pki_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("push-pki")
    tls_ca, push_ca = pki.create_ca("Test TLS CA", "tests"), pki.create_ca("Test Push CA", "tests")
    (d / "tls-ca.pem").write_bytes(tls_ca.cert_pem())
    (d / "push-ca.pem").write_bytes(push_ca.cert_pem())
    files = {"tls_ca": str(d / "tls-ca.pem"), "push_ca": str(d / "push-ca.pem")}
    for name, ident in (("server", pki.issue_tls_server(tls_ca, ["localhost"], ["127.0.0.1"])),
                        ("push", pki.issue_push_identity(push_ca, TOPIC))):
        (d / f"{name}.pem").write_bytes(ident.cert_pem())
        (d / f"{name}.key").write_bytes(ident.key_pem())
        files[name] = (str(d / f"{name}.pem"), str(d / f"{name}.key"))
    return files


class RecordingMock(MockAPNs):
    """The mock APNs, keeping each request; with ``delay`` it answers that much later."""

    def __init__(self, *args, delay: float | None = None, **kw) -> None:
        super().__init__(*args, **kw)
        self.requests: list[tuple[dict, bytes]] = []
        self.delay, self.outstanding, self.peak = delay, 0, 0

    def handle(self, c, sid, h, body) -> None:
        self.requests.append((h, body))
        if self.delay is None:
            return super().handle(c, sid, h, body)
        self.outstanding += 1
        self.peak = max(self.peak, self.outstanding)
        asyncio.get_running_loop().call_later(self.delay, self._answer, c, sid, h, body)

    def _answer(self, c, sid, h, body) -> None:
        self.outstanding -= 1
        super().handle(c, sid, h, body)


class Sleeps(list):
    """An injected ``sleep`` that records the delays instead of waiting."""

    async def __call__(self, delay: float) -> None:
        self.append(delay)


def run(pki_files, scenario, *, setup=None, mock_kw=None, url=None, **kw):
    """Start a mock, ``setup(mock)``, ``await scenario(client, mock)``; returns (its result, sleeps, mock)."""
    sleeps = Sleeps()

    async def go():
        mock = RecordingMock(*pki_files["server"], pki_files["push_ca"], **(mock_kw or {}))
        port = await mock.start("127.0.0.1", 0)
        if setup:
            setup(mock)
        try:
            async with APNsClient(url or f"https://127.0.0.1:{port}", *pki_files["push"],
                                  ca_bundle=pki_files["tls_ca"], sleep=sleeps, rng=random.Random(7), **kw) as c:
                return await scenario(c, mock), mock
        finally:
            await mock.stop()

    out, mock = asyncio.run(go())
    return out, sleeps, mock


def push(pki_files, targets, **kw):
    return run(pki_files, lambda client, _mock: client.push_many(targets), **kw)


def target(i: int) -> PushTarget:
    return PushTarget(f"U{i}", i.to_bytes(32, "big"), f"M{i}", TOPIC)


def test_success_sends_mdm_push_with_apple_headers(pki_files):
    (result,), sleeps, mock = push(pki_files, [TARGET])
    assert result.ok and result.status == 200 and result.apns_id
    assert not result.unregistered and result.reason is None and result.attempts == 1
    assert sleeps == []
    (h, body), = mock.requests
    assert h[b":method"] == b"POST" and h[b":scheme"] == b"https"
    assert h[b":path"] == f"/3/device/{TOKEN.hex()}".encode()
    assert h[b":authority"] == f"127.0.0.1:{mock.port}".encode()
    assert json.loads(body) == {"mdm": "MAGIC-1"}
    assert h[b"apns-topic"] == TOPIC.encode() and h[b"apns-push-type"] == b"mdm"
    assert h[b"apns-priority"] == b"10" and h[b"apns-expiration"] == b"0"
    assert h[b"content-type"] == b"application/json"
    (accepted,) = mock.pushes
    assert (accepted.token, accepted.topic, accepted.payload) == (TOKEN.hex(), TOPIC, {"mdm": "MAGIC-1"})
    assert accepted.apns_id == result.apns_id


def test_priority_and_expiration_are_configurable(pki_files):
    (result,), _, mock = push(pki_files, [TARGET], priority=5, expiration=1_900_000_000)
    assert result.ok
    assert (mock.pushes[0].priority, mock.pushes[0].expiration) == (5, 1_900_000_000)


def test_default_base_url_is_apple_production(pki_files):
    client = APNsClient(None, *pki_files["push"])
    assert client.base_url == APPLE_PRODUCTION
    assert (client._host, client._port, client._authority) == ("api.push.apple.com", 443, b"api.push.apple.com")


def test_410_unregistered_is_reported_and_not_retried(pki_files):
    (result,), sleeps, mock = push(pki_files, [TARGET], setup=lambda m: m.mark_unregistered(TOKEN, 1700000000000))
    assert result.status == 410 and result.reason == "Unregistered" and result.apns_id
    assert result.unregistered and not result.ok
    assert len(mock.requests) == 1 and sleeps == []


@pytest.mark.parametrize("reason", ["BadDeviceToken", "DeviceTokenNotForTopic"])
def test_400_bad_token_is_unregistered_and_not_retried(pki_files, reason):
    (result,), sleeps, mock = push(pki_files, [TARGET], setup=lambda m: m.inject(status=400, reason=reason))
    assert result.status == 400 and result.reason == reason and result.apns_id
    assert result.unregistered and not result.ok
    assert len(mock.requests) == 1 and sleeps == []


def test_malformed_token_gets_bad_device_token_from_apns(pki_files):
    (result,), _, mock = push(pki_files, [PushTarget("U", b"\x01\x02", "M", TOPIC)])
    assert (result.status, result.reason, result.unregistered) == (400, "BadDeviceToken", True)
    assert mock.pushes == []


@pytest.mark.parametrize("status,reason", [(400, "TopicDisallowed"), (403, "BadCertificate"), (413, "PayloadTooLarge")])
def test_other_client_errors_are_final_but_keep_the_token(pki_files, status, reason):
    (result,), _, mock = push(pki_files, [TARGET], setup=lambda m: m.inject(status=status, reason=reason))
    assert (result.status, result.reason, result.ok, result.unregistered) == (status, reason, False, False)
    assert len(mock.requests) == 1


def test_a_body_larger_than_a_frame_is_sent_in_frames_and_apns_refuses_it(pki_files):
    big = PushTarget("BIG", TOKEN, "x" * 20000, TOPIC)  # > 16 KiB frames; APNs allows 4 KiB
    results, _, mock = push(pki_files, [big, target(2)])
    assert (results[0].status, results[0].reason, results[0].ok) == (413, "PayloadTooLarge", False)
    assert results[1].ok and json.loads(mock.requests[0][1]) == {"mdm": "x" * 20000}  # all of it arrived


def test_429_is_retried_after_retry_after(pki_files):
    (result,), sleeps, mock = push(
        pki_files, [TARGET], setup=lambda m: m.inject(status=429, reason="TooManyRequests", retry_after=7))
    assert result.ok and result.attempts == 2 and len(mock.requests) == 2
    assert sleeps == [7.0]


def test_503_is_retried_with_jittered_backoff(pki_files):
    (result,), sleeps, mock = push(pki_files, [TARGET], setup=lambda m: m.inject(status=503), backoff_base=0.2)
    assert result.ok and len(mock.requests) == 2 and len(mock.pushes) == 1
    assert len(sleeps) == 1 and 0.1 <= sleeps[0] <= 0.2


@pytest.mark.parametrize("fault,kw", [("reset", {}), ("goaway", {}), ("rst_stream", {}), ("hang", {"timeout": 0.3})])
def test_transport_errors_are_retried(pki_files, fault, kw):
    (result,), sleeps, mock = push(pki_files, [TARGET], setup=lambda m: m.inject(fault), **kw)
    assert result.ok and result.apns_id and result.attempts == 2
    assert len(mock.requests) == 2 and len(sleeps) == 1
    # a lone hung request with nothing heard since: the connection is presumed dead and replaced
    assert mock.counts["connections"] == (1 if fault == "rst_stream" else 2)


def test_a_hung_stream_amid_live_traffic_is_reset_alone(pki_files):
    results, sleeps, mock = push(pki_files, [target(i) for i in range(1, 51)], setup=lambda m: m.inject("hang"),
                                 timeout=0.3)
    assert all(r.ok for r in results) and results[0].attempts == 2
    assert [r.attempts for r in results[1:]] == [1] * 49
    assert len(mock.requests) == 51 and len(sleeps) == 1 and mock.counts["connections"] == 1


def test_retries_exhausted_reports_last_status_with_growing_backoff(pki_files):
    (result,), sleeps, mock = push(pki_files, [TARGET], setup=lambda m: m.inject(status=503, n=10),
                                   retries=3, backoff_base=0.2)
    assert (result.status, result.reason, result.ok, result.unregistered) == (503, "ServiceUnavailable", False, False)
    assert result.attempts == 4 and len(mock.requests) == 4
    assert len(sleeps) == 3
    for i, delay in enumerate(sleeps):
        assert 0.1 * 2**i <= delay <= 0.2 * 2**i


def test_backoff_is_capped(pki_files):
    _, sleeps, _ = push(pki_files, [TARGET], setup=lambda m: m.inject(status=500, reason="InternalServerError", n=10),
                        retries=6, backoff_base=1.0, max_backoff=4.0)
    assert len(sleeps) == 6 and max(sleeps) <= 4.0


def test_timeouts_exhausted_do_not_raise(pki_files):
    (result,), sleeps, mock = push(pki_files, [TARGET], setup=lambda m: m.inject("hang", 3), retries=2, timeout=0.2)
    assert (result.status, result.apns_id, result.reason, result.ok, result.attempts) == (None, None, "Timeout", False, 3)
    assert len(mock.requests) == 3 and len(sleeps) == 2


def test_connection_refused_exhausted_does_not_raise(pki_files):
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        url = f"https://127.0.0.1:{s.getsockname()[1]}"
        results, sleeps, _ = push(pki_files, [TARGET, target(2)], url=url, retries=2)
    for result in results:
        assert (result.status, result.apns_id, result.reason, result.ok) == (None, None, "ConnectionRefusedError", False)
        assert result.attempts == 3
    assert len(sleeps) == 4


def test_unexpected_error_becomes_a_result(pki_files):
    broken = PushTarget("BROKEN", None, "M", TOPIC)  # type: ignore[arg-type]
    results, _, mock = push(pki_files, [target(1), broken, target(2)])
    assert [r.udid for r in results] == ["U1", "BROKEN", "U2"]
    assert results[0].ok and results[2].ok
    assert not results[1].ok and results[1].status is None and results[1].reason == "AttributeError"
    assert len(mock.pushes) == 2


def test_many_targets_in_order_with_bounded_concurrency_over_one_connection(pki_files):
    targets = [target(i) for i in range(1, 601)]

    def setup(mock):
        for t in targets[255::256]:
            mock.mark_unregistered(t.token)

    results, _, mock = push(pki_files, targets, setup=setup, mock_kw={"delay": 0.002}, max_concurrency=20)
    assert [r.udid for r in results] == [t.udid for t in targets]
    assert len(mock.requests) == 600 and 1 < mock.peak <= 20
    assert mock.counts["connections"] == 1
    gone = {r.udid for r in results if r.unregistered}
    assert gone == {f"U{i}" for i in range(1, 601) if i % 256 == 0}
    assert all(r.ok for r in results if r.udid not in gone)
    assert {json.loads(body)["mdm"] for _, body in mock.requests} == {t.push_magic for t in targets}


def test_server_max_concurrent_streams_is_respected(pki_files):
    results, _, mock = push(pki_files, [target(i) for i in range(200)],
                            mock_kw={"delay": 0.002, "max_streams": 5}, max_concurrency=100)
    assert all(r.ok for r in results)
    assert mock.peak == 5 and mock.counts["connections"] == 1


def test_concurrent_push_many_calls_share_the_connection_and_the_limit(pki_files):
    async def scenario(c, _mock):
        a, b = await asyncio.gather(c.push_many([target(i) for i in range(100)]),
                                    c.push_many([target(i) for i in range(100, 150)]))
        return a, b, await c.push(target(999))

    (a, b, single), _, mock = run(pki_files, scenario, mock_kw={"delay": 0.002}, max_concurrency=10)
    assert [r.udid for r in a] == [f"U{i}" for i in range(100)] and all(r.ok for r in a)
    assert [r.udid for r in b] == [f"U{i}" for i in range(100, 150)] and all(r.ok for r in b)
    assert single.ok and single.udid == "U999"
    assert mock.counts["connections"] == 1 and 1 < mock.peak <= 10


def test_aclose_ends_pushes_in_flight_as_results(pki_files):
    async def scenario(c, mock):
        pushing = asyncio.ensure_future(c.push_many([TARGET]))
        while not mock.requests:
            await asyncio.sleep(0.01)
        await c.aclose()
        return await pushing, await c.push_many([target(2)])

    ((result,), (after,)), _, _ = run(pki_files, scenario, setup=lambda m: m.inject("hang"))
    assert (result.ok, result.status, result.reason) == (False, None, "ClientClosed")
    assert (after.ok, after.reason) == (False, "ClientClosed")


def test_retry_after_parsing():
    assert _retry_after(None) is None and _retry_after("") is None
    assert _retry_after("12") == 12.0 and _retry_after("-3") == 0.0
    assert _retry_after("inf") is None and _retry_after("soon") is None
    later = email.utils.formatdate(time.time() + 120, usegmt=True)
    assert 100 < _retry_after(later) <= 120


def test_constructor_validates_arguments(pki_files):
    with pytest.raises(ValueError):
        APNsClient("https://apns.test", *pki_files["push"], max_concurrency=0)
    with pytest.raises(ValueError):
        APNsClient("https://apns.test", *pki_files["push"], retries=-1)
    with pytest.raises(ValueError):
        APNsClient("http://apns.test", *pki_files["push"])


def _h2_pair(max_streams: int = 1000):
    client, server = FastH2Connection(client_side=True), FastH2Connection(client_side=False)
    client.initiate_connection()
    server.initiate_connection()
    server.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: max_streams})
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    return client, server


def _request(client, path=b"/3/device/00"):
    sid = client.get_next_available_stream_id()
    client.send_headers(sid, [(b":method", b"POST"), (b":scheme", b"https"), (b":path", path),
                              (b":authority", b"apns.test")], end_stream=True)
    return sid


def test_fast_h2_connection_counts_open_streams_like_h2_and_prunes_closed_ones():
    client, server = _h2_pair()
    sids = [_request(client) for _ in range(300)]
    server.receive_data(client.data_to_send())
    assert server.open_inbound_streams == 300 == client.open_outbound_streams
    for sid in sids[:200]:  # answer two thirds; each side reports what it saw close
        server.send_headers(sid, [(b":status", b"200")], end_stream=True)
        server.stream_closed()
    ended = [e for e in client.receive_data(server.data_to_send()) if isinstance(e, h2.events.StreamEnded)]
    for _ in ended:
        client.stream_closed()
    assert len(ended) == 200
    base = h2.connection.H2Connection  # h2's own count scans every stream (and prunes the closed ones)
    assert client.open_outbound_streams == 100 == base.open_outbound_streams.fget(client)
    assert server.open_inbound_streams == 100 == base.open_inbound_streams.fget(server)
    assert len(client.streams) == len(server.streams) == 100
    for _ in range(1000):  # many more short streams: closed ones are pruned as they gather
        sid = _request(client)
        server.receive_data(client.data_to_send())
        server.send_headers(sid, [(b":status", b"200")], end_stream=True)
        server.stream_closed()
        client.receive_data(server.data_to_send())
        client.stream_closed()
    assert client.open_outbound_streams == 100 == server.open_inbound_streams
    assert len(client.streams) < 300 and len(server.streams) < 300


def test_fast_h2_connection_enforces_the_peers_stream_limit_and_sends_plain_literals():
    client, server = _h2_pair(max_streams=10)
    for _ in range(10):
        _request(client)
    with pytest.raises(h2.exceptions.TooManyStreamsError):
        _request(client)
    path = b"/3/device/" + bytes(range(32)).hex().encode()
    client, server = _h2_pair()
    _request(client, path)
    assert path in client.data_to_send()  # not Huffman-coded
