"""Request limits: per-device and per-token rate limits, API body size, request timeout.

Rate limits are token buckets kept per process (each instance limits what it
serves; behind a load balancer the effective limit is per instance).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from app.errors import error_body
from mdm.errors import RateLimited


class RateLimiter:
    """Token buckets by key: ``rate`` tokens per second, up to ``burst``."""

    def __init__(self, rate: float, burst: float, *, max_keys: int = 200_000, clock=time.monotonic) -> None:
        self.rate, self.burst = rate, burst
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, key: str) -> None:
        """Take one token for ``key`` or raise RateLimited."""
        if self.rate <= 0:
            return
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens < 1:
                self._buckets[key] = (tokens, now)
                wait = (1 - tokens) / self.rate
                raise RateLimited(f"too many requests; retry in {wait:.1f}s", details={"retry_after": round(wait, 1)})
            self._buckets[key] = (tokens - 1, now)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)


def install_limits(app: FastAPI, settings) -> None:
    app.add_middleware(LimitsMiddleware, api_max=settings.max_api_bytes, timeout=settings.request_timeout_seconds)


class LimitsMiddleware:
    """URL sanity, the API body limit and the request timeout, as plain ASGI (every device
    request passes here: no per-request task group, no request object)."""

    def __init__(self, app, *, api_max: int, timeout: float) -> None:
        self.app = app
        self.api_max = api_max
        self.timeout = timeout

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        # no URL has a use for NUL, and PostgreSQL refuses it in any text it is compared with
        if "\x00" in scope["path"] or any(n in scope["query_string"] for n in (b"%00", b"\x00")):
            return await JSONResponse(error_body("parse_error", "the URL contains a NUL character"), 400)(
                scope, receive, send)
        if scope["path"].startswith("/api/") and scope["method"] in ("POST", "PUT", "PATCH"):
            declared = _header(scope, b"content-length")
            if declared is not None and (not declared.isdigit() or int(declared) > self.api_max):
                return await JSONResponse(error_body("limit_exceeded", f"body larger than {self.api_max} bytes"),
                                          413)(scope, receive, send)
        started = abandoned = False

        async def guarded_send(message) -> None:
            nonlocal started
            if abandoned:
                return  # the client already has its 503
            started = True
            await send(message)

        def too_late() -> None:
            # work in a thread cannot be cancelled: answer on time and let it finish (its transaction
            # is atomic); a timer, not a task per request (every device request passes here)
            nonlocal abandoned
            if started:
                return  # a reply is on its way: let it finish
            abandoned = True
            reply = JSONResponse(error_body("timeout", f"request took longer than {self.timeout}s"), 503,
                                 headers={"Retry-After": "5"})
            _late_replies.add(t := asyncio.ensure_future(reply(scope, receive, send)))
            t.add_done_callback(_late_replies.discard)

        timer = asyncio.get_running_loop().call_later(self.timeout, too_late)
        try:
            await self.app(scope, receive, guarded_send)
        except Exception:
            if not abandoned:
                raise  # the error handler's reply; after a 503, what the late work raised is moot
        finally:
            timer.cancel()


_late_replies: set[asyncio.Future] = set()  # the loop keeps only weak references to tasks


def _header(scope, name: bytes) -> str | None:
    for k, v in scope["headers"]:
        if k == name:
            return v.decode("latin-1")
    return None
