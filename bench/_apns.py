"""Watching the mock APNs from the bench: ``GET /_mock/stats`` (HTTP/2, TLS) polled in a thread.

``track(base, n)`` polls every ``interval`` seconds until the mock has accepted ``n`` more
pushes than ``base``; ``fan_out()`` then says when the first and the last of them were seen,
so the push fan-out rate is measured at the mock, to within one polling interval.
"""

from __future__ import annotations

import ssl
import threading
import time

import httpx


class MockStats:
    def __init__(self, base_url: str, ca_file: str, interval: float = 0.05) -> None:
        self.url = base_url.rstrip("/") + "/_mock/stats"
        self.interval = interval
        self._http = httpx.Client(http2=True, verify=ssl.create_default_context(cafile=ca_file), timeout=10.0)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.base = self.target = 0
        self.first_seen: float | None = None  # first poll showing more than base
        self.before_first: float | None = None  # the poll before it (still at base)
        self.last_seen: float | None = None  # first poll showing base + n
        self.before_last: float | None = None  # the poll before it
        self.polls = 0
        self.poll_errors = 0

    def fetch(self) -> dict:
        with self._lock:
            r = self._http.get(self.url)
        r.raise_for_status()
        return r.json()

    def accepted(self) -> int:
        return int(self.fetch()["accepted"])

    def track(self, base: int, n: int) -> None:
        self.base, self.target = base, base + n
        self.first_seen = self.before_first = self.last_seen = self.before_last = None
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="bench-mock-stats", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        prev = time.monotonic()
        while not self._stop.is_set():
            try:
                n = self.accepted()
            except (httpx.HTTPError, ValueError, KeyError):
                self.poll_errors += 1
                self._stop.wait(self.interval)
                continue
            now = time.monotonic()
            self.polls += 1
            if self.first_seen is None and n > self.base:
                self.first_seen, self.before_first = now, prev
            if n >= self.target:
                self.last_seen, self.before_last = now, prev
                return
            prev = now
            self._stop.wait(self.interval)

    def done(self) -> bool:
        return self.last_seen is not None

    def fan_out(self, n: int) -> dict:
        """First to last push as seen at the mock; rate = n / that window (None if not resolvable)."""
        if self.first_seen is None or self.last_seen is None:
            return {"pushes": n, "seconds": None, "per_second": None, "resolution_seconds": self.interval}
        # each event landed between two polls: take the midpoints
        window = (self.last_seen + self.before_last) / 2 - (self.first_seen + self.before_first) / 2
        return {"pushes": n, "seconds": round(window, 3),
                "per_second": round(n / window, 1) if window > 2 * self.interval else None,
                "resolution_seconds": self.interval}

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._http.close()
