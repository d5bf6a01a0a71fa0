"""Async APNs provider client for MDM wake-up pushes.

One ``APNsClient`` holds one HTTP/2 connection (TLS with ALPN ``h2``, the push identity as
client certificate, the server checked against ``ca_bundle`` or the system CAs) and
multiplexes many device pushes over it as concurrent streams, at most ``max_concurrency``
and the server's ``MAX_CONCURRENT_STREAMS`` at a time. An MDM push is
``POST /3/device/<hex token>`` with body ``{"mdm": "<PushMagic>"}``; the device then
contacts the MDM server, so the payload carries nothing else.

Per-device outcomes are returned as ``PushResult`` values and never raised:
429, 5xx and transport errors (connection lost, GOAWAY, stream reset, timeout) are retried
with exponential backoff and jitter (honouring ``Retry-After``); 410 and bad-token 400s are
reported as ``unregistered`` so the caller can forget the token; other 4xx are final. A lost
connection is replaced by a new one as soon as pushes are waiting.

The transport is ``h2`` on an asyncio protocol (``mdm.push.connection``, kept up by
``mdm.push.link``), not an HTTP client library: a push costs well under 0.1 ms of CPU
instead of about 1 ms, which lets one process push to a whole city's iPads in seconds.
Pushes are queued requests completed by callbacks; only a retry's backoff (``sleep``) and
connecting are tasks.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import hpack

from mdm.push.connection import Request
from mdm.push.link import Link

log = logging.getLogger(__name__)

APPLE_PRODUCTION = "https://api.push.apple.com"
APPLE_SANDBOX = "https://api.sandbox.push.apple.com"
UNREGISTERED_REASONS = frozenset({"BadDeviceToken", "DeviceTokenNotForTopic", "Unregistered"})


@dataclass(frozen=True)
class PushTarget:
    udid: str
    token: bytes
    push_magic: str
    topic: str


@dataclass(frozen=True)
class PushResult:
    udid: str
    status: int | None  # HTTP status of the last attempt; None if it never got a reply
    apns_id: str | None
    reason: str | None  # APNs ``reason``, or the transport error's name
    ok: bool
    unregistered: bool  # 410, or 400 BadDeviceToken / DeviceTokenNotForTopic: drop the token
    attempts: int = 1


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _reason(body: bytes) -> str | None:
    if not body:
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    reason = data.get("reason") if isinstance(data, dict) else None
    return reason if isinstance(reason, str) else None


class _Batch:
    """One ``push_many`` call: results by index, resolved when the last one is in."""

    __slots__ = ("results", "left", "future", "cancelled")

    def __init__(self, n: int, future: asyncio.Future) -> None:
        self.results: list[PushResult | None] = [None] * n
        self.left, self.future, self.cancelled = n, future, False

    def done(self, index: int, result: PushResult) -> None:
        if self.results[index] is None:
            self.results[index] = result
            self.left -= 1
            if not self.left and not self.future.done():
                self.future.set_result(self.results)


class _Push(Request):
    """A push to one device across its attempts (``attempt`` counts from 0)."""

    __slots__ = ("target", "batch", "index", "attempt")

    def __init__(self, target: PushTarget, batch: _Batch, index: int, headers: list, body: bytes) -> None:
        super().__init__(headers, body)
        self.target, self.batch, self.index, self.attempt = target, batch, index, 0

    def skip(self) -> bool:
        return self.batch.cancelled

    def result(self, status: int | None, apns_id: str | None, reason: str | None, ok: bool = False,
               unregistered: bool = False) -> PushResult:
        return PushResult(self.target.udid, status, apns_id, reason, ok, unregistered, self.attempt + 1)


class APNsClient:
    """Pushes MDM wake-ups to many devices over one HTTP/2 connection.

    ``base_url``: None means ``APPLE_PRODUCTION``; or ``APPLE_SANDBOX``, or the mock's URL.
    ``sleep`` is what backoff awaits; tests pass a recorder to skip the waiting.
    ``timeout`` bounds connecting (TCP, TLS, the server's SETTINGS) and each request.
    """

    def __init__(
        self,
        base_url: str | None,
        cert_path: str,
        key_path: str,
        *,
        ca_bundle: str | None = None,
        max_concurrency: int = 100,
        retries: int = 4,
        backoff_base: float = 0.2,
        max_backoff: float = 30.0,
        timeout: float = 10.0,
        expiration: int = 0,
        priority: int = 10,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if max_concurrency < 1 or retries < 0:
            raise ValueError("max_concurrency must be >= 1 and retries >= 0")
        self.base_url = (base_url or APPLE_PRODUCTION).rstrip("/")
        url = urlsplit(self.base_url)
        if url.scheme != "https" or not url.hostname:
            raise ValueError(f"APNs base_url must be https://host[:port], not {self.base_url!r}")
        # ca_bundle: our mock's CA; otherwise the system trust store (Apple's chain).
        ctx = ssl.create_default_context(cafile=ca_bundle)
        ctx.load_cert_chain(cert_path, key_path)
        ctx.set_alpn_protocols(["h2"])  # APNs is HTTP/2 only
        self._host, self._port = url.hostname, url.port or 443
        self._authority = url.netloc.rpartition("@")[2].encode()
        self.retries = retries
        self.backoff_base = backoff_base
        self.max_backoff = max_backoff
        self.timeout = timeout
        self.expiration = expiration
        self.priority = priority
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._topics: dict[str, bytes] = {}
        self._tasks: set[asyncio.Task] = set()  # backoff sleeps
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        # max_concurrency: streams in flight at once, shared by concurrent push_many calls
        self._link = Link(self, self.base_url, self._host, self._port, ctx, limit=max_concurrency, timeout=timeout)

    async def __aenter__(self) -> APNsClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection; pushes still under way end as ``ClientClosed`` results."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for push in self._link.close():
            push.batch.done(push.index, push.result(None, None, "ClientClosed"))  # type: ignore[attr-defined]
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._link.wait_closed()

    async def push(self, target: PushTarget) -> PushResult:
        return (await self.push_many([target]))[0]

    async def push_many(self, targets: Iterable[PushTarget]) -> list[PushResult]:
        """Push to every target over the shared connection; results in the order of ``targets``."""
        todo = list(targets)
        if not todo:
            return []
        self._loop = loop = asyncio.get_running_loop()
        self._link.bind(loop)
        batch = _Batch(len(todo), loop.create_future())
        head = [(b":method", b"POST"), (b":scheme", b"https"), (b":authority", self._authority)]
        tail = [(b"apns-push-type", b"mdm"), (b"apns-priority", str(self.priority).encode()),
                (b"apns-expiration", str(self.expiration).encode()), (b"content-type", b"application/json")]
        topics, dumps, never_indexed = self._topics, json.dumps, hpack.NeverIndexedHeaderTuple
        pushes = []
        for i, t in enumerate(todo):
            try:
                topic = topics.get(t.topic)
                if topic is None:
                    topic = topics[t.topic] = t.topic.encode()
                # the path is unique per device: kept out of the HPACK table, which then holds the rest
                path = never_indexed(b":path", b"/3/device/" + t.token.hex().encode())
                body = dumps({"mdm": t.push_magic}, separators=(",", ":")).encode()
                pushes.append(_Push(t, batch, i, [*head, path, (b"apns-topic", topic), *tail], body))
            except Exception as e:  # a malformed target: its own failure, not the batch's
                self._on_broken(_Push(t, batch, i, [], b""), e)
        if self._closed:
            for push in pushes:
                batch.done(push.index, push.result(None, None, "ClientClosed"))
        else:
            self._link.submit(pushes)
        try:
            return await batch.future  # type: ignore[return-value]
        except asyncio.CancelledError:
            batch.cancelled = True  # queued pushes are dropped unsent
            raise

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with equal jitter, but never sooner than Retry-After."""
        ceiling = min(self.max_backoff, self.backoff_base * (2**attempt))
        delay = ceiling / 2 + self._rng.uniform(0, ceiling / 2)
        return max(delay, retry_after) if retry_after is not None else delay

    # --- outcomes -------------------------------------------------------------------------------
    def _on_reply(self, push: _Push) -> None:
        status = push.status
        if status == 200:
            push.batch.done(push.index, push.result(200, push.apns_id, None, True))
            return
        reason = _reason(push.data)
        unregistered = status == 410 or (status == 400 and reason in UNREGISTERED_REASONS)
        self._settle(push, push.result(status, push.apns_id, reason, False, unregistered), push.retry_after)

    def _on_error(self, push: _Push, reason: str) -> None:
        self._settle(push, push.result(None, None, reason), None)

    def _on_broken(self, push: _Push, error: Exception) -> None:
        log.warning("APNs push to %s failed unexpectedly", push.target.udid, exc_info=error)
        push.batch.done(push.index, push.result(None, None, type(error).__name__))

    def _settle(self, push: _Push, result: PushResult, retry_after: str | None) -> None:
        """Final result, or retry after a backoff: 429, 5xx and transport errors are retried."""
        status = result.status
        retryable = status is None or status == 429 or status >= 500
        if not retryable or push.attempt >= self.retries or push.batch.cancelled or self._closed:
            log.debug("APNs push to %s: %s %s", push.target.udid, status, result.reason)
            push.batch.done(push.index, result)
            return
        delay = self._delay(push.attempt, _retry_after(retry_after))
        push.attempt += 1
        push.clear_reply()
        task = self._loop.create_task(self._retry(push, delay))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _retry(self, push: _Push, delay: float) -> None:
        try:
            await self._sleep(delay)
        except asyncio.CancelledError:
            if self._closed:
                push.batch.done(push.index, push.result(None, None, "ClientClosed"))
            raise
        except Exception as e:  # an injected sleep that fails: this push ends here
            self._on_broken(push, e)
            return
        if push.batch.cancelled:
            return
        if self._closed:
            push.batch.done(push.index, push.result(None, None, "ClientClosed"))
            return
        self._link.requeue(push)
