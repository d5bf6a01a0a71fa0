"""Keep-alive HTTP/1.1 connections to one origin (``Pool``), each an asyncio ``Protocol``.

Used through ``simulator.http.HTTPClient``. A ``Connection`` carries one request at a
time: ``send`` writes it and returns a future for the ``Response``, which
``simulator.http_parse`` reads as the bytes arrive. The ``Pool`` opens at most
``max_connections``, hands idle ones out last-in first-out and serves waiters in order,
and times responses with one periodic check instead of a timer per request.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque

from simulator.http_parse import ConnectionClosed, HTTPError, RequestTimeout, ResponseParser


class Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser: ResponseParser | None = None
        self.waiter: asyncio.Future | None = None
        self.usable = True  # may carry another request
        self.idle = False  # in the pool's idle list

    def connection_made(self, transport) -> None:
        self.transport = transport

    def send(self, data: bytes, method: str) -> asyncio.Future:
        self.parser = ResponseParser(method)
        self.waiter = self.pool.loop.create_future()
        assert self.transport is not None
        self.transport.write(data)
        return self.waiter

    def data_received(self, data: bytes) -> None:
        parser, waiter = self.parser, self.waiter
        if parser is None or waiter is None or waiter.done():  # unasked-for bytes: drop the connection
            self.close(abort=True)
            return
        try:
            response = parser.feed(data)
        except HTTPError as e:
            self._fail(e)
            return
        if response is not None:
            self.parser = self.waiter = None
            if not response.keep_alive:
                self.close()
            waiter.set_result(response)

    def eof_received(self) -> bool:
        self._closed(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed(exc)
        if self.idle:
            self.pool.forget(self)

    def _closed(self, exc: Exception | None) -> None:
        self.usable = False
        parser, waiter = self.parser, self.waiter
        if parser is None or waiter is None or waiter.done():
            return
        self.parser = self.waiter = None
        try:
            response = parser.close()
        except ConnectionClosed as e:
            waiter.set_exception(e if exc is None else
                                 ConnectionClosed(f"{e}: {exc}", response_started=e.response_started))
            return
        if exc is not None:
            waiter.set_exception(ConnectionClosed(f"connection lost: {exc}", response_started=True))
        else:
            waiter.set_result(response)

    def _fail(self, e: HTTPError) -> None:
        waiter = self.waiter
        self.close(abort=True)
        self.parser = self.waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_exception(e)

    def timed_out(self) -> None:
        self._fail(RequestTimeout(f"no complete response within {self.pool.timeout:g} s"))

    def close(self, *, abort: bool = False) -> None:
        """Close the connection (``abort``: at once, dropping what is not sent yet)."""
        self.usable = False
        t = self.transport
        if t is not None and not t.is_closing():
            if abort:
                t.abort()
            else:
                t.close()


class Pool:
    """Connections to one origin: idle ones reused last-in first-out, waiters served in order."""

    def __init__(self, loop, host: str, port: int, ssl_ctx: ssl.SSLContext | None, max_connections: int,
                 timeout: float) -> None:
        self.loop, self.host, self.port, self.ssl = loop, host, port, ssl_ctx
        self.max_connections, self.timeout = max_connections, timeout
        self.idle: list[Connection] = []
        self.count = 0  # open or opening connections, idle ones included
        self.waiters: deque[asyncio.Future] = deque()
        self.closed = False
        self.busy: dict[Connection, float] = {}  # connection waiting for a response -> its deadline
        self._watchdog: asyncio.TimerHandle | None = None

    def watch(self, c: Connection) -> None:
        """Time the response on ``c``: one periodic check per pool, not a timer per request."""
        self.busy[c] = self.loop.time() + self.timeout
        if self._watchdog is None:
            self._watchdog = self.loop.call_later(min(1.0, self.timeout / 4), self._check_deadlines)

    def _check_deadlines(self) -> None:
        self._watchdog = None
        now = self.loop.time()
        for c, deadline in list(self.busy.items()):
            if deadline <= now:
                del self.busy[c]
                c.timed_out()
        if self.busy:
            self._watchdog = self.loop.call_later(min(1.0, self.timeout / 4), self._check_deadlines)

    async def acquire(self) -> tuple[Connection, bool]:
        """A connection and whether it was used before."""
        while self.idle:
            c = self.idle.pop()
            c.idle = False
            if c.usable:
                return c, True
            self.count -= 1
        if self.count >= self.max_connections:
            fut = self.loop.create_future()
            self.waiters.append(fut)
            try:
                c = await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():  # handed a connection or a slot: pass it on
                    if fut.result() is not None:
                        self.release(fut.result())
                    else:
                        self.count -= 1
                        self._wake()
                raise
            if c is not None:
                return c, True
        else:
            self.count += 1
        try:
            return await self._connect(), False
        except BaseException:
            self.count -= 1
            self._wake()
            raise

    async def _connect(self) -> Connection:
        if self.closed:
            raise HTTPError("the client is closed")
        try:
            _, conn = await asyncio.wait_for(self.loop.create_connection(
                lambda: Connection(self), self.host, self.port, ssl=self.ssl,
                server_hostname=self.host if self.ssl is not None else None), self.timeout)
        except TimeoutError:
            raise RequestTimeout(f"connecting to {self.host}:{self.port} took over {self.timeout:g} s") from None
        except OSError as e:  # ssl.SSLError (certificate verification too) is an OSError
            raise HTTPError(f"cannot connect to {self.host}:{self.port}: {e}") from None
        return conn

    def release(self, c: Connection) -> None:
        """Back to the pool after a request (a connection that is not usable is closed)."""
        if c.usable and not self.closed:
            while self.waiters:
                fut = self.waiters.popleft()
                if not fut.done():
                    fut.set_result(c)
                    return
            c.idle = True
            self.idle.append(c)
            return
        c.close()
        self.count -= 1
        self._wake()

    def forget(self, c: Connection) -> None:
        """An idle connection closed by the server."""
        if c in self.idle:
            self.idle.remove(c)
            c.idle = False
            self.count -= 1
            self._wake()

    def _wake(self) -> None:
        """A connection slot is free: the first waiter opens a new connection."""
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                self.count += 1
                fut.set_result(None)
                return

    def close(self) -> None:
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        for c in self.idle:
            c.idle = False
            c.close()
        self.idle.clear()
