"""Mock APNs: HTTP/2 over TLS (``simulator.h2server``), close enough to Apple for MDM pushes.

``POST /3/device/<hex token>`` needs a client certificate issued by the
configured "Apple push CA"; the topic must equal the certificate's subject UID,
``apns-push-type`` must be ``mdm`` and the body JSON with an ``mdm`` key.
Accepted pushes are recorded with a sequence number and delivered to the fleet
simulator (maybe another process) over the same port, no client certificate
needed: ``GET /_mock/feed?after=<seq>&wait=<s>&limit=<n>`` long-polls and returns
``{"pushes": [{"seq", "token", "topic", "payload", ...}], "last": seq}``;
``GET /_mock/stats`` counts replies. Tests mark tokens unregistered (410) and
queue faults: status replies, connection resets, GOAWAYs, stream resets, hangs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import h2.errors
import httpx
from cryptography import x509
from hpack import NeverIndexedHeaderTuple

from mdm.errors import ParseError
from mdm.pki import push_topic
from simulator.h2server import H2Connection, H2Server

log = logging.getLogger(__name__)

TOKEN_PATH = re.compile(rb"/3/device/([0-9a-fA-F]{64,})")
MAX_PAYLOAD = 4096  # Apple's limit for non-VoIP pushes
MAX_BODY = 65536  # larger request bodies get the stream reset
MAX_WAIT = 60.0


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
    Retry-After), ``reset`` (drop the connection), ``goaway`` (close it gracefully, APNs'
    ``{"reason": "Shutdown"}``), ``rst_stream``, ``hang`` (never answer) or ``pass`` (answer
    normally: ``inject("pass", 100)`` delays the faults queued after it)."""

    kind: str = "status"
    status: int = 503
    reason: str = "ServiceUnavailable"
    retry_after: int | None = None


def _int(value: bytes | None, default: int) -> int | None:
    try:
        return default if value is None else int(value)
    except ValueError:
        return None


class MockAPNs(H2Server):
    """The server, on the running event loop: ``port = await start(host, port)``, ``await stop()``.
    ``pushes``, ``counts``, ``subscribe``, ``mark_unregistered`` and ``inject`` are the test
    API; they are plain container operations, safe to call from another thread."""

    def __init__(self, cert_path: str, key_path: str, client_ca_path: str, *, max_streams: int = 1000) -> None:
        super().__init__(cert_path, key_path, client_ca_path, max_streams=max_streams, max_body=MAX_BODY)
        self.pushes: list[Push] = []
        self.unregistered: dict[str, int] = {}
        self.faults: deque[Fault] = deque()
        self.counts: Counter[str] = Counter()
        self._subscribers: list[Callable[[Push], object]] = []
        self._waiters: list[asyncio.Future] = []

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

    def connected(self, conn: H2Connection) -> None:  # context: the client certificate's topic, or None
        self.counts["connections"] += 1
        if conn.peer_cert:
            try:
                conn.context = push_topic(x509.load_der_x509_certificate(conn.peer_cert))
            except (ParseError, ValueError):
                pass

    def handle(self, c: H2Connection, sid: int, h: dict, body: bytes) -> None:
        path = h.get(b":path", b"")
        if path.startswith(b"/3/device/"):
            self._device(c, sid, h, path, body)
        elif path.startswith(b"/_mock/feed"):
            c.spawn(sid, self._feed(c, sid, path))
        elif path.startswith(b"/_mock/stats"):
            c.respond_json(sid, 200, self.stats())
        else:
            c.respond_json(sid, 404, {"reason": "BadPath"})

    def _device(self, c: H2Connection, sid: int, h: dict, path: bytes, body: bytes) -> None:
        apns_id = (h.get(b"apns-id") or b"").decode() or str(uuid.uuid4()).upper()
        headers = [NeverIndexedHeaderTuple(b"apns-id", apns_id.encode())]  # unique: keep it out of HPACK tables
        fault = self.faults.popleft() if self.faults else None
        if fault is not None and fault.kind != "pass":
            self.counts["fault:" + fault.kind] += 1
            if fault.kind == "reset":
                c.abort()
            elif fault.kind == "goaway":
                c.goaway(b'{"reason":"Shutdown"}')
            elif fault.kind == "rst_stream":
                c.reset(sid, h2.errors.ErrorCodes.INTERNAL_ERROR)
            elif fault.kind == "status":
                if fault.retry_after is not None:
                    headers.append((b"retry-after", str(fault.retry_after).encode()))
                self.counts[str(fault.status)] += 1
                c.respond_json(sid, fault.status, {"reason": fault.reason}, headers)
            return  # "hang": never answer
        status, error, push = self._validate(c, h, path, body, apns_id)
        self.counts[str(status)] += 1
        if push is None:
            c.respond_json(sid, status, error, headers)
            return
        self.pushes.append(push)
        c.respond(sid, 200, b"", headers)
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(None)
        self._waiters.clear()
        for callback in self._subscribers:
            try:
                callback(push)
            except Exception:
                log.exception("mock APNs subscriber failed")

    def _validate(self, c: H2Connection, h: dict, path: bytes, body: bytes,
                  apns_id: str) -> tuple[int, dict | None, Push | None]:
        """APNs' checks in APNs' order: (status, error body, None) or (200, None, push)."""
        m = TOKEN_PATH.fullmatch(path)
        topic = (h.get(b"apns-topic") or b"").decode()
        priority, expiration = _int(h.get(b"apns-priority"), 10), _int(h.get(b"apns-expiration"), 0)
        for bad, status, reason in (
            (h.get(b":method") != b"POST", 405, "MethodNotAllowed"),
            (c.peer_cert is None, 403, "MissingProviderToken"),
            (m is None, 400, "BadDeviceToken"),
            (not topic, 400, "MissingTopic"),
            (topic != c.context, 400, "TopicDisallowed"),
            (h.get(b"apns-push-type") != b"mdm", 400, "InvalidPushType"),
            (priority not in (1, 5, 10), 400, "BadPriority"),
            (expiration is None, 400, "BadExpirationDate"),
            (not body, 400, "PayloadEmpty"),
            (len(body) > MAX_PAYLOAD, 413, "PayloadTooLarge"),
        ):
            if bad:
                return status, {"reason": reason}, None
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if not isinstance(payload, dict) or not isinstance(payload.get("mdm"), str):
            return 400, {"reason": "BadMessage"}, None
        token = m.group(1).decode().lower()
        if token in self.unregistered:
            return 410, {"reason": "Unregistered", "timestamp": self.unregistered[token]}, None
        return 200, None, Push(len(self.pushes) + 1, token, topic, payload, apns_id, priority, expiration)

    async def _feed(self, c: H2Connection, sid: int, path: bytes) -> None:
        q = {k: v[0] for k, v in parse_qs(urlsplit(path.decode()).query).items()}
        try:
            after = max(0, int(q.get("after", 0)))
            wait = min(MAX_WAIT, max(0.0, float(q.get("wait", 0))))
            limit = min(10000, max(1, int(q.get("limit", 1000))))
        except ValueError:
            return c.respond_json(sid, 400, {"reason": "BadQuery"})
        if len(self.pushes) <= after and wait > 0:
            woken = asyncio.get_running_loop().create_future()
            self._waiters.append(woken)
            try:
                await asyncio.wait_for(woken, wait)
            except TimeoutError:
                self._waiters.remove(woken)
        batch = self.pushes[after:after + limit]
        last = batch[-1].seq if batch else min(after, len(self.pushes))  # a restarted mock rewinds
        c.respond_json(sid, 200, {"pushes": [vars(x) for x in batch], "last": last})  # asdict deep-copies: slow


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
