"""A lean HTTP/1.1 client for virtual iPads: keep-alive connections over TLS, pooled per origin.

The fleet shares two cores with the server it measures, so its HTTP client must cost little
per request: a plain asyncio ``Protocol`` per connection (no streams, no task per request)
writes the request with a ``Content-Length`` body in one go and parses the reply as it comes
(``simulator.http_parse``: Content-Length, chunked and close-delimited bodies, Connection: close).

* Connections are kept alive and reused, at most ``max_connections`` per origin; a
  request waits for a free one in order of arrival.
* Server certificates are verified with the given ``ssl.SSLContext`` (hostname or IP
  address included) unless the URL is ``http``.
* A request whose reused keep-alive connection turns out to have been closed by the
  server before any byte of the response came back is sent again on a new connection,
  but only for idempotent methods (RFC 9110 section 9.2.2); anything else raises
  ``HTTPError`` and is the caller's to retry (``DeviceClient`` resends reports as iOS does).
* ``timeout`` bounds connecting (and the TLS handshake) and, separately, the wait for
  the whole response; a connection that timed out is closed, never reused.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from urllib.parse import urlencode, urlsplit

from simulator.http_parse import (ConnectionClosed, HTTPError, ProtocolError, RequestTimeout, Response,
                                  ResponseParser)

__all__ = ["ConnectionClosed", "HTTPClient", "HTTPError", "ProtocolError", "RequestTimeout", "Response", "tls_context"]
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})


def tls_context(ca_file: str | None = None, insecure: bool = False) -> ssl.SSLContext:
    """Verify against ``ca_file`` (or the system CAs); ``insecure`` verifies nothing."""
    if insecure:
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        return ctx
    return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)


class _Connection(asyncio.Protocol):
    def __init__(self, pool: _Pool) -> None:
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


class _Pool:
    """Connections to one origin: idle ones reused last-in first-out, waiters served in order."""

    def __init__(self, loop, host: str, port: int, ssl_ctx: ssl.SSLContext | None, max_connections: int,
                 timeout: float) -> None:
        self.loop, self.host, self.port, self.ssl = loop, host, port, ssl_ctx
        self.max_connections, self.timeout = max_connections, timeout
        self.idle: list[_Connection] = []
        self.count = 0  # open or opening connections, idle ones included
        self.waiters: deque[asyncio.Future] = deque()
        self.closed = False

    async def acquire(self) -> tuple[_Connection, bool]:
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

    async def _connect(self) -> _Connection:
        if self.closed:
            raise HTTPError("the client is closed")
        try:
            _, conn = await asyncio.wait_for(self.loop.create_connection(
                lambda: _Connection(self), self.host, self.port, ssl=self.ssl,
                server_hostname=self.host if self.ssl is not None else None), self.timeout)
        except TimeoutError:
            raise RequestTimeout(f"connecting to {self.host}:{self.port} took over {self.timeout:g} s") from None
        except OSError as e:  # ssl.SSLError (certificate verification too) is an OSError
            raise HTTPError(f"cannot connect to {self.host}:{self.port}: {e}") from None
        return conn

    def release(self, c: _Connection) -> None:
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

    def forget(self, c: _Connection) -> None:
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
        for c in self.idle:
            c.idle = False
            c.close()
        self.idle.clear()


class HTTPClient:
    """``await client.request("PUT", url, content=b"...", headers={...})`` -> ``Response``."""

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None, max_connections: int = 8,
                 timeout: float = 60.0) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.ssl_context = ssl_context or tls_context()
        self.max_connections, self.timeout = max_connections, timeout
        self._pools: dict[tuple[str, str, int], _Pool] = {}
        self._routes: dict[str, tuple[_Pool, str, str]] = {}  # URL -> (pool, request target, Host)

    def _route(self, url: str) -> tuple[_Pool, str, str]:
        route = self._routes.get(url)
        if route is not None:
            return route
        u = urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        port = u.port or (443 if u.scheme == "https" else 80)
        key = (u.scheme, u.hostname, port)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = _Pool(asyncio.get_running_loop(), u.hostname, port,
                                            self.ssl_context if u.scheme == "https" else None,
                                            self.max_connections, self.timeout)
        host = f"[{u.hostname}]" if ":" in u.hostname else u.hostname
        if port != (443 if u.scheme == "https" else 80):
            host = f"{host}:{port}"
        route = (pool, (u.path or "/") + (f"?{u.query}" if u.query else ""), host)
        if len(self._routes) >= 1024:
            self._routes.clear()
        self._routes[url] = route
        return route

    async def request(self, method: str, url: str, *, params: dict | None = None, content: bytes = b"",
                      headers: dict[str, str] | None = None) -> Response:
        pool, target, host = self._route(url)
        if params:
            target += ("&" if "?" in target else "?") + urlencode(params)
        lines = [f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n"]
        if content or method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
            lines.append(f"Content-Length: {len(content)}\r\n")
        if headers:
            for name, value in headers.items():
                if "\r" in value or "\n" in value or "\r" in name or "\n" in name or ":" in name:
                    raise ValueError(f"bad header field {name!r}")
                lines.append(f"{name}: {value}\r\n")
        lines.append("\r\n")
        data = "".join(lines).encode("latin-1") + content
        for attempt in (0, 1):
            conn, reused = await pool.acquire()
            fut = conn.send(data, method)
            timer = pool.loop.call_later(self.timeout, conn.timed_out)
            try:
                response = await fut
            except ConnectionClosed as e:
                pool.release(conn)
                if attempt == 0 and reused and method in IDEMPOTENT and not e.response_started:
                    continue  # most likely a keep-alive connection the server closed while it was idle
                raise
            except BaseException:  # an HTTP error or a cancelled request: the connection is done for
                conn.close(abort=True)
                pool.release(conn)
                raise
            finally:
                timer.cancel()
            pool.release(conn)
            return response
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        self._routes.clear()
        await asyncio.sleep(0)  # let the transports close
