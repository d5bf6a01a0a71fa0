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
  the whole response (checked a few times per timeout, at least every second); a
  connection that timed out is closed, never reused.
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import urlencode, urlsplit

from simulator.http_parse import ConnectionClosed, HTTPError, ProtocolError, RequestTimeout, Response
from simulator.http_pool import Pool

__all__ = ["ConnectionClosed", "HTTPClient", "HTTPError", "ProtocolError", "RequestTimeout", "Response", "tls_context"]
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})


def tls_context(ca_file: str | None = None, insecure: bool = False) -> ssl.SSLContext:
    """Verify against ``ca_file`` (or the system CAs); ``insecure`` verifies nothing."""
    if insecure:
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        return ctx
    return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)


class HTTPClient:
    """``await client.request("PUT", url, content=b"...", headers={...})`` -> ``Response``."""

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None, max_connections: int = 8,
                 timeout: float = 60.0) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.ssl_context = ssl_context or tls_context()
        self.max_connections, self.timeout = max_connections, timeout
        self._pools: dict[tuple[str, str, int], Pool] = {}
        self._routes: dict[str, tuple[Pool, str, str]] = {}  # URL -> (pool, request target, Host)

    def _route(self, url: str) -> tuple[Pool, str, str]:
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
            pool = self._pools[key] = Pool(asyncio.get_running_loop(), u.hostname, port,
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
            pool.watch(conn)
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
                pool.busy.pop(conn, None)
            pool.release(conn)
            return response
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        self._routes.clear()
        await asyncio.sleep(0)  # let the transports close
