"""Request limits: per-device and per-token rate limits, API body size, request timeout.

Rate limits are token buckets kept per process (each instance limits what it
serves; behind a load balancer the effective limit is per instance).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict

from fastapi import FastAPI, Request
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
    api_max = settings.max_api_bytes
    timeout = settings.request_timeout_seconds

    @app.middleware("http")
    async def limits(request: Request, call_next):
        path = request.url.path
        # no URL has a use for NUL, and PostgreSQL refuses it in any text it is compared with
        if "\x00" in request.scope["path"] or any(n in request.scope["query_string"] for n in (b"%00", b"\x00")):
            return JSONResponse(error_body("parse_error", "the URL contains a NUL character"), 400)
        if path.startswith("/api/") and request.method in ("POST", "PUT", "PATCH"):
            declared = request.headers.get("content-length")
            if declared is not None and (not declared.isdigit() or int(declared) > api_max):
                return JSONResponse(error_body("limit_exceeded", f"body larger than {api_max} bytes"), 413)
        # work in a thread cannot be cancelled: answer on time and let it finish (its transaction is atomic)
        task = asyncio.ensure_future(call_next(request))
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if task in done:
            return task.result()
        task.add_done_callback(_consume)
        return JSONResponse(error_body("timeout", f"request took longer than {timeout}s"), 503,
                            headers={"Retry-After": "5"})


def _consume(task: asyncio.Task) -> None:
    if not task.cancelled():
        task.exception()
