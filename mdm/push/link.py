"""The APNs client's link to the server: one HTTP/2 connection, kept up while requests wait.

Requests are queued; ``pump`` puts them on the connection as far as its limits allow, or
starts connecting: TCP, TLS with ALPN ``h2``, then the server's SETTINGS, all within
``timeout``. If connecting fails, every waiting request has spent an attempt on it: the
owner gets ``_on_error(req, reason)`` for each (and retries after its backoff). A lost
connection's requests go the same way, and if requests still wait a new connection is
opened at once. The connection reports replies straight to the owner (``_on_reply``,
``_on_error``, ``_on_broken``) and its own fate to the link (``_on_lost``, ``_retire``).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from typing import Any

from mdm.push.connection import APNsConnection, Request

log = logging.getLogger(__name__)


class Link:
    def __init__(self, owner: Any, name: str, host: str, port: int, ssl_context: ssl.SSLContext, *,
                 limit: int, timeout: float) -> None:
        self.name, self.host, self.port, self.ssl = name, host, port, ssl_context
        self.limit, self.timeout = limit, timeout
        self._on_reply, self._on_error, self._on_broken = owner._on_reply, owner._on_error, owner._on_broken
        self.queue: deque[Request] = deque()
        self.conn: APNsConnection | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.closed = False
        self._connecting: asyncio.Task | None = None
        self._cancelled: asyncio.Task | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Use ``loop`` from now on (first use, or a new event loop: nothing carries over)."""
        if self.loop is not loop:
            self.loop, self.conn, self._connecting = loop, None, None
            self.queue.clear()

    def submit(self, requests: list[Request]) -> None:
        self.queue.extend(requests)
        self._pump()

    def requeue(self, request: Request) -> None:
        """A retry goes first: its push has waited longest."""
        self.queue.appendleft(request)
        self._pump()

    def _pump(self) -> None:
        if not self.queue or self.closed:
            return
        if self.conn is not None:
            self.conn.send_from(self.queue)
        elif self._connecting is None:
            self._connecting = self.loop.create_task(self._connect())

    async def _connect(self) -> None:
        conn: APNsConnection | None = None
        why: str | None = None
        try:
            async with asyncio.timeout(self.timeout):
                _, conn = await self.loop.create_connection(
                    lambda: APNsConnection(self, self.limit, self.timeout),
                    self.host, self.port, ssl=self.ssl, server_hostname=self.host)
                why = "NoHTTP2" if conn.alpn != "h2" else await conn.ready  # ready: the server's SETTINGS
        except asyncio.CancelledError:
            if conn is not None:
                conn.abort()
            raise
        except Exception as e:
            why = type(e).__name__
            log.warning("APNs: cannot connect to %s: %s", self.name, e or why)
        finally:
            self._connecting = None
        if why is None and not self.closed:
            self.conn = conn
            self._pump()
            return
        if conn is not None:
            conn.abort()
        waiting = list(self.queue)  # each waiting request spent an attempt on this
        self.queue.clear()
        for req in waiting:
            if not req.skip():
                self._on_error(req, why or "ClientClosed")

    def _retire(self, conn: APNsConnection) -> None:
        """``conn`` takes no new streams (it drains); the next request opens a new connection."""
        if self.conn is conn:
            self.conn = None

    def _on_lost(self, conn: APNsConnection, carried: list[Request], reason: str) -> None:
        if self.conn is conn:
            self.conn = None
        if carried:
            log.info("APNs connection lost (%s) with %d requests in flight", reason, len(carried))
        for req in carried:
            self._on_error(req, reason)
        self._pump()

    def close(self) -> list[Request]:
        """Stop: GOAWAY and close the connection; returns the requests queued or in flight."""
        self.closed = True
        self._cancelled = self._connecting
        if self._connecting is not None:
            self._connecting.cancel()
        unfinished = [*self.queue, *(self.conn.detach() if self.conn is not None else ())]
        self.queue.clear()
        return unfinished

    async def wait_closed(self) -> None:
        if self._cancelled is not None:
            await asyncio.gather(self._cancelled, return_exceptions=True)
        if self.conn is not None:
            conn, self.conn = self.conn, None
            await conn.wait_closed(1.0)
