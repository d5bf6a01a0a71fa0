"""Async APNs provider client for MDM wake-up pushes.

One ``APNsClient`` holds one HTTP/2 connection (TLS, the push identity as
client certificate) and multiplexes many device pushes over it. An MDM push is
``POST /3/device/<hex token>`` with body ``{"mdm": "<PushMagic>"}``; the device
then contacts the MDM server, so the payload carries nothing else.

Per-device outcomes are returned as ``PushResult`` values and never raised:
429, 5xx and transport errors are retried with exponential backoff and jitter
(honouring ``Retry-After``); 410 and bad-token 400s are reported as
``unregistered`` so the caller can forget the token; other 4xx are final.
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

import httpx

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
    reason: str | None  # APNs ``reason``, or the transport error's class name
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


def _reason(response: httpx.Response) -> str | None:
    if not response.content:
        return None
    try:
        body = json.loads(response.content)
    except ValueError:
        return None
    return body.get("reason") if isinstance(body, dict) else None


class APNsClient:
    """Pushes MDM wake-ups to many devices over one HTTP/2 connection.

    ``base_url``: None means ``APPLE_PRODUCTION``; or ``APPLE_SANDBOX``, or the mock's URL.
    ``sleep`` is what backoff awaits; tests pass a recorder to skip the waiting.
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
        # ca_bundle: our mock's CA; otherwise the system trust store (Apple's chain).
        ctx = ssl.create_default_context(cafile=ca_bundle)
        ctx.load_cert_chain(cert_path, key_path)
        self.base_url = (base_url or APPLE_PRODUCTION).rstrip("/")
        self.retries = retries
        self.backoff_base = backoff_base
        self.max_backoff = max_backoff
        self.expiration = expiration
        self.priority = priority
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._concurrency = max_concurrency
        self._limit = asyncio.Semaphore(max_concurrency)  # shared by concurrent push_many calls
        # http1=False: APNs is HTTP/2 only; max_connections=1: every push shares one connection.
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            http1=False,
            http2=True,
            verify=ctx,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        )

    async def __aenter__(self) -> APNsClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def push(self, target: PushTarget) -> PushResult:
        return (await self.push_many([target]))[0]

    async def push_many(self, targets: Iterable[PushTarget]) -> list[PushResult]:
        """Push to every target, ``max_concurrency`` at a time; results in the order of ``targets``."""
        todo = list(targets)
        results: list[PushResult | None] = [None] * len(todo)
        queue = iter(enumerate(todo))

        async def worker() -> None:  # a few workers instead of one task per device
            for i, target in queue:
                results[i] = await self._push_one(target)

        await asyncio.gather(*(worker() for _ in range(min(self._concurrency, len(todo)))))
        return results  # type: ignore[return-value]

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with equal jitter, but never sooner than Retry-After."""
        ceiling = min(self.max_backoff, self.backoff_base * (2**attempt))
        delay = ceiling / 2 + self._rng.uniform(0, ceiling / 2)
        return max(delay, retry_after) if retry_after is not None else delay

    async def _push_one(self, target: PushTarget) -> PushResult:
        try:
            return await self._push_with_retries(target)
        except Exception as e:  # never raise for one device's failure
            log.warning("APNs push to %s failed unexpectedly", target.udid, exc_info=True)
            return PushResult(target.udid, None, None, type(e).__name__, False, False)

    async def _push_with_retries(self, target: PushTarget) -> PushResult:
        path = "/3/device/" + target.token.hex()
        body = json.dumps({"mdm": target.push_magic}, separators=(",", ":")).encode()
        headers = {
            "apns-topic": target.topic,
            "apns-push-type": "mdm",
            "apns-priority": str(self.priority),
            "apns-expiration": str(self.expiration),
            "content-type": "application/json",
        }
        attempt = 0
        while True:
            retry_after: float | None = None
            async with self._limit:
                try:
                    response = await self._client.post(path, content=body, headers=headers)
                except httpx.TransportError as e:
                    result = PushResult(target.udid, None, None, type(e).__name__, False, False, attempt + 1)
                else:
                    result = self._classify(target, response, attempt + 1)
                    retry_after = _retry_after(response.headers.get("retry-after"))
            retryable = result.status is None or result.status == 429 or result.status >= 500
            if result.ok or not retryable or attempt >= self.retries:
                if not result.ok:
                    log.debug("APNs push to %s: %s %s", target.udid, result.status, result.reason)
                return result
            await self._sleep(self._delay(attempt, retry_after))
            attempt += 1

    @staticmethod
    def _classify(target: PushTarget, response: httpx.Response, attempts: int) -> PushResult:
        status = response.status_code
        apns_id = response.headers.get("apns-id")
        if status == 200:
            return PushResult(target.udid, status, apns_id, None, True, False, attempts)
        reason = _reason(response)
        unregistered = status == 410 or (status == 400 and reason in UNREGISTERED_REASONS)
        return PushResult(target.udid, status, apns_id, reason, False, unregistered, attempts)
