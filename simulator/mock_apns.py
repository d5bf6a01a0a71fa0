"""Mock APNs: HTTP/2 over TLS on asyncio + h2, close enough to Apple for MDM pushes.

``POST /3/device/<hex token>`` needs a client certificate issued by the
configured "Apple push CA"; the topic must equal the certificate's subject UID,
``apns-push-type`` must be ``mdm`` and the body JSON with an ``mdm`` key.
Accepted pushes are recorded with a sequence number and delivered to the fleet
simulator (maybe another process) over the same port, no client certificate
needed: ``GET /_mock/feed?after=<seq>&wait=<s>&limit=<n>`` long-polls and returns
``{"pushes": [{"seq", "token", "topic", "payload", ...}], "last": seq}``;
``GET /_mock/stats`` counts replies. Tests mark tokens unregistered (410) and
queue faults: status replies, connection resets, stream resets, hangs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import ssl
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from urllib.parse import parse_qs, urlsplit

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import httpx
from cryptography import x509

from mdm.errors import ParseError
from mdm.pki import push_topic

log = logging.getLogger(__name__)

TOKEN_PATH = re.compile(rb"/3/device/([0-9a-fA-F]{64,})")
MAX_PAYLOAD = 4096  # Apple's limit for non-VoIP pushes
MAX_BODY = 65536  # larger request bodies get the stream reset
MAX_WAIT = 60.0
_H2_CONFIG = h2.config.H2Configuration(  # h2's header checks off for speed; we check what APNs checks
    client_side=False, header_encoding=None, validate_inbound_headers=False, normalize_inbound_headers=False,
    validate_outbound_headers=False, normalize_outbound_headers=False,
)


@dataclass(frozen=True)
class Push:
    seq: int
    token: str  # lowercase hex
    topic: str
    payload: dict
    apns_id: str
    priority: int
    expiration: int


@dataclass(frozen=True)
class Fault:
    """A forced outcome for one device push: ``status`` (a reply with ``reason`` and optional
    Retry-After), ``reset`` (drop the connection), ``rst_stream``, ``hang`` (never answer)
    or ``pass`` (answer normally: ``inject("pass", 100)`` delays the faults queued after it)."""

    kind: str = "status"
    status: int = 503
    reason: str = "ServiceUnavailable"
    retry_after: int | None = None


def _int(value: bytes | None, default: int) -> int | None:
    try:
        return default if value is None else int(value)
    except ValueError:
        return None


class _Connection(asyncio.Protocol):
    """One client connection: h2 state, partial requests, flow-controlled output."""

    def __init__(self, mock: MockAPNs) -> None:
        self.mock, self.conn = mock, h2.connection.H2Connection(config=_H2_CONFIG)
        self.transport: asyncio.Transport | None = None
        self.has_cert, self.topic = False, None
        self.requests: dict[int, tuple[dict, bytearray]] = {}
        self.pending: dict[int, bytes] = {}
        self.tasks: dict[int, asyncio.Task] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        der = transport.get_extra_info("ssl_object").getpeercert(binary_form=True)
        if der:
            self.has_cert = True
            try:
                self.topic = push_topic(x509.load_der_x509_certificate(der))
            except (ParseError, ValueError):
                self.topic = None
        self.mock._conns.add(self)
        self.mock.counts["connections"] += 1
        self.conn.initiate_connection()
        self.conn.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.mock.max_streams})
        self.conn.increment_flow_control_window(2**24)
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.mock._conns.discard(self)
        for task in self.tasks.values():
            task.cancel()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.transport.is_closing():
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            events = [h2.events.ConnectionTerminated()]
        for ev in events:
            if self.transport.is_closing():  # a "reset" fault: the rest of the batch is lost
                return
            sid = getattr(ev, "stream_id", 0)
            if isinstance(ev, h2.events.RequestReceived):
                self.requests[sid] = (dict(ev.headers), bytearray())
            elif isinstance(ev, h2.events.DataReceived):
                self.conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                if sid in self.requests:
                    self.requests[sid][1].extend(ev.data)
                    if len(self.requests[sid][1]) > MAX_BODY:
                        del self.requests[sid]
                        self.conn.reset_stream(sid, h2.errors.ErrorCodes.REFUSED_STREAM)
            elif isinstance(ev, h2.events.StreamEnded) and sid in self.requests:
                headers, body = self.requests.pop(sid)
                self.mock._handle(self, sid, headers, bytes(body))
            elif isinstance(ev, h2.events.StreamReset):
                self.requests.pop(sid, None)
                self.pending.pop(sid, None)
                if sid in self.tasks:
                    self.tasks.pop(sid).cancel()
            elif isinstance(ev, h2.events.WindowUpdated):
                for pending_sid in list(self.pending):
                    self._pump(pending_sid)
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.flush()
                self.transport.close()
                return
        self.flush()

    def respond(self, sid: int, status: int, body: dict | None = None, headers: list | None = None) -> None:
        data = json.dumps(body, separators=(",", ":")).encode() if body is not None else b""
        hdrs = [(b":status", str(status).encode()), *(headers or [])]
        if data:
            hdrs += [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
        try:
            self.conn.send_headers(sid, hdrs, end_stream=not data)
        except h2.exceptions.H2Error:  # the client reset the stream meanwhile
            return
        if data:
            self.pending[sid] = data
            self._pump(sid)

    def _pump(self, sid: int) -> None:
        data = self.pending.pop(sid)
        try:
            while data:
                n = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size, len(data))
                if n <= 0:
                    self.pending[sid] = data  # wait for WINDOW_UPDATE
                    return
                self.conn.send_data(sid, data[:n])
                data = data[n:]
            self.conn.end_stream(sid)
        except h2.exceptions.H2Error:
            return


class MockAPNs:
    """The server, on the running event loop: ``port = await start(host, port)``, ``await stop()``.

    ``pushes``, ``counts``, ``subscribe``, ``mark_unregistered`` and ``inject`` are the test
    API; they are plain container operations, safe to call from another thread.
    """

    def __init__(self, cert_path: str, key_path: str, client_ca_path: str, *, max_streams: int = 1000) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(cert_path, key_path)
        ctx.load_verify_locations(client_ca_path)
        ctx.verify_mode = ssl.CERT_OPTIONAL  # a cert is required per request, for /3/device/ only
        ctx.set_alpn_protocols(["h2"])
        self.ssl_context, self.max_streams, self.port = ctx, max_streams, None
        self.pushes: list[Push] = []
        self.unregistered: dict[str, int] = {}
        self.faults: deque[Fault] = deque()
        self.counts: Counter[str] = Counter()
        self._subscribers: list[Callable[[Push], object]] = []
        self._waiters: list[asyncio.Future] = []
        self._conns: set[_Connection] = set()
        self._server: asyncio.Server | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), host, port, ssl=self.ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for conn in list(self._conns):
                conn.transport.abort()
            await self._server.wait_closed()
            self._server = None

    def subscribe(self, callback: Callable[[Push], object]) -> Callable[[], None]:
        """Call ``callback(push)`` on the server's loop for every accepted push; returns unsubscribe."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def mark_unregistered(self, token: bytes | str, timestamp_ms: int | None = None) -> None:
        key = token.hex() if isinstance(token, bytes) else token.lower()
        self.unregistered[key] = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms

    def inject(self, kind: str = "status", n: int = 1, **fault: object) -> None:
        """Force the next ``n`` device pushes' outcome, e.g. ``inject("status", 2, status=429, retry_after=3)``."""
        self.faults.extend([Fault(kind, **fault)] * n)  # type: ignore[arg-type]

    def stats(self) -> dict:
        return {"accepted": len(self.pushes), "counts": dict(self.counts)}

    def _handle(self, c: _Connection, sid: int, h: dict, body: bytes) -> None:
        path = h.get(b":path", b"")
        if path.startswith(b"/3/device/"):
            self._device(c, sid, h, path, body)
        elif path.startswith(b"/_mock/feed"):
            c.tasks[sid] = asyncio.get_running_loop().create_task(self._feed(c, sid, path))
            c.tasks[sid].add_done_callback(lambda _t: c.tasks.pop(sid, None))
        elif path.startswith(b"/_mock/stats"):
            c.respond(sid, 200, self.stats())
        else:
            c.respond(sid, 404, {"reason": "BadPath"})

    def _device(self, c: _Connection, sid: int, h: dict, path: bytes, body: bytes) -> None:
        apns_id = (h.get(b"apns-id") or b"").decode() or str(uuid.uuid4()).upper()
        headers = [(b"apns-id", apns_id.encode())]
        fault = self.faults.popleft() if self.faults else None
        if fault is not None and fault.kind != "pass":
            self.counts["fault:" + fault.kind] += 1
            if fault.kind == "reset":
                c.flush()
                c.transport.abort()
            elif fault.kind == "rst_stream":
                c.conn.reset_stream(sid, h2.errors.ErrorCodes.INTERNAL_ERROR)
            elif fault.kind == "status":
                if fault.retry_after is not None:
                    headers.append((b"retry-after", str(fault.retry_after).encode()))
                self.counts[str(fault.status)] += 1
                c.respond(sid, fault.status, {"reason": fault.reason}, headers)
            return  # "hang": never answer
        status, error, push = self._validate(c, h, path, body, apns_id)
        self.counts[str(status)] += 1
        if push is None:
            c.respond(sid, status, error, headers)
            return
        self.pushes.append(push)
        c.respond(sid, 200, None, headers)
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(None)
        self._waiters.clear()
        for callback in list(self._subscribers):
            try:
                callback(push)
            except Exception:
                log.exception("mock APNs subscriber failed")

    def _validate(self, c: _Connection, h: dict, path: bytes, body: bytes,
                  apns_id: str) -> tuple[int, dict, Push | None]:
        """APNs' checks in APNs' order: (status, error body, None) or (200, {}, push)."""
        m = TOKEN_PATH.fullmatch(path)
        topic = (h.get(b"apns-topic") or b"").decode()
        priority, expiration = _int(h.get(b"apns-priority"), 10), _int(h.get(b"apns-expiration"), 0)
        try:
            payload = json.loads(body) if 0 < len(body) <= MAX_PAYLOAD else None
        except ValueError:
            payload = None
        for bad, status, reason in (
            (h.get(b":method") != b"POST", 405, "MethodNotAllowed"),
            (not c.has_cert, 403, "MissingProviderToken"),
            (m is None, 400, "BadDeviceToken"),
            (not topic, 400, "MissingTopic"),
            (topic != c.topic, 400, "TopicDisallowed"),
            (h.get(b"apns-push-type") != b"mdm", 400, "InvalidPushType"),
            (priority not in (1, 5, 10), 400, "BadPriority"),
            (expiration is None, 400, "BadExpirationDate"),
            (not body, 400, "PayloadEmpty"),
            (len(body) > MAX_PAYLOAD, 413, "PayloadTooLarge"),
            (not isinstance(payload, dict) or not isinstance(payload.get("mdm"), str), 400, "BadMessage"),
        ):
            if bad:
                return status, {"reason": reason}, None
        token = m.group(1).decode().lower()
        if token in self.unregistered:
            return 410, {"reason": "Unregistered", "timestamp": self.unregistered[token]}, None
        return 200, {}, Push(len(self.pushes) + 1, token, topic, payload, apns_id, priority, expiration)

    async def _feed(self, c: _Connection, sid: int, path: bytes) -> None:
        q = {k: v[0] for k, v in parse_qs(urlsplit(path.decode()).query).items()}
        try:
            after = max(0, int(q.get("after", 0)))
            wait = min(MAX_WAIT, max(0.0, float(q.get("wait", 0))))
            limit = min(10000, max(1, int(q.get("limit", 1000))))
        except ValueError:
            c.respond(sid, 400, {"reason": "BadQuery"})
            return c.flush()
        if len(self.pushes) <= after and wait > 0:
            woken = asyncio.get_running_loop().create_future()
            self._waiters.append(woken)
            try:
                await asyncio.wait_for(woken, wait)
            except TimeoutError:
                self._waiters.remove(woken)
        batch = self.pushes[after:after + limit]
        last = batch[-1].seq if batch else min(after, len(self.pushes))  # a restarted mock rewinds
        c.respond(sid, 200, {"pushes": [asdict(x) for x in batch], "last": last})
        c.flush()


async def follow_feed(client: httpx.AsyncClient, base_url: str, after: int = 0, wait: float = 20.0,
                      limit: int = 1000) -> AsyncIterator[dict]:
    """Yield pushes from a mock's feed forever (client: ``httpx.AsyncClient(http2=True, verify=ca)``)."""
    while True:
        params = {"after": after, "wait": wait, "limit": limit}
        r = await client.get(f"{base_url.rstrip('/')}/_mock/feed", params=params, timeout=wait + 10.0)
        r.raise_for_status()
        data = r.json()
        for push in data["pushes"]:
            yield push
        after = data["last"]


class MockAPNsThread:
    """A MockAPNs on its own loop in a daemon thread: ``with t as port: t.mock.inject(...)``."""

    def __init__(self, cert_path: str, key_path: str, client_ca_path: str, host: str = "127.0.0.1",
                 port: int = 0, **kw: int) -> None:
        self.mock = MockAPNs(cert_path, key_path, client_ca_path, **kw)
        self.host, self.port = host, port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="mock-apns", daemon=True)
        self._started, self._error = threading.Event(), None

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def _run(self) -> None:
        try:
            self.port = self._loop.run_until_complete(self.mock.start(self.host, self.port))
        except BaseException as e:
            self._error = e
            self._loop.close()
            return self._started.set()
        self._started.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self.mock.stop())
        self._loop.close()

    def __enter__(self) -> int:
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            raise self._error
        return self.port

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()


def run(host: str, port: int, cert: str, key: str, client_ca: str) -> None:
    """Serve until interrupted; first prints ``mock-apns listening on https://host:port``."""

    async def serve() -> None:
        mock = MockAPNs(cert, key, client_ca)
        print(f"mock-apns listening on https://{host}:{await mock.start(host, port)}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await mock.stop()

    asyncio.run(serve())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="mock-apns", description="Mock APNs (HTTP/2 over TLS) for schoolmdm")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=2197)
    ap.add_argument("--cert", required=True, help="TLS server certificate (PEM)")
    ap.add_argument("--key", required=True, help="TLS server key (PEM)")
    ap.add_argument("--client-ca", required=True, help="CA that issued the push identities (PEM)")
    args = ap.parse_args(argv)
    try:
        run(args.host, args.port, args.cert, args.key, args.client_ca)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
