"""Reading HTTP/1.1 responses off a byte stream (RFC 9112), incrementally.

``ResponseParser.feed(data)`` takes bytes as they arrive and returns the ``Response``
once it is complete; ``close()`` tells it the peer closed the connection, which ends a
body that runs until close and is an error anywhere else. Bodies may be framed by
``Content-Length``, by ``Transfer-Encoding: chunked`` (decoded; trailers are read and
dropped) or by the end of the connection. Interim 1xx responses are skipped; any other
transfer coding, a ``101 Switching Protocols`` or a malformed head is a ``ProtocolError``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

MAX_HEAD_BYTES = 64 * 1024  # status line and header fields; also the limit for one chunk-size or trailer line
_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _TRAILERS, _UNTIL_CLOSE, _DONE = range(7)
_HEX = frozenset(b"0123456789abcdefABCDEF")


class HTTPError(Exception):
    """No complete response: connecting, TLS, a timeout, a closed connection or a malformed reply."""


class ProtocolError(HTTPError):
    """The peer's bytes are not an HTTP/1.1 response this client can read."""


class RequestTimeout(HTTPError):
    """Connecting or waiting for the response took longer than the timeout."""


class ConnectionClosed(HTTPError):
    """The server closed the connection before the response was complete."""

    def __init__(self, message: str, *, response_started: bool = False) -> None:
        super().__init__(message)
        self.response_started = response_started  # False: not a byte of the response came back


@dataclass(slots=True)
class Response:
    status_code: int
    reason: str
    headers: dict[str, str]  # lower-case field names; repeated fields joined with ", "
    content: bytes
    http_version: str = "HTTP/1.1"
    keep_alive: bool = True  # whether the connection may carry another request

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.content)


def _tokens(value: str | None) -> set[str]:
    return {t.strip().lower() for t in value.split(",")} if value else set()


class ResponseParser:
    """Parses one response to a request with ``method`` (HEAD responses have no body)."""

    __slots__ = ("method", "buf", "state", "remaining", "parts", "head")

    def __init__(self, method: str) -> None:
        self.method = method
        self.buf = bytearray()
        self.state = _HEAD
        self.remaining = 0
        self.parts: list[bytes] = []
        self.head: Response | None = None

    @property
    def started(self) -> bool:
        """Whether any byte of the response has arrived."""
        return bool(self.buf) or self.state != _HEAD

    def feed(self, data: bytes) -> Response | None:
        if self.state == _DONE:
            raise ProtocolError("bytes after the end of the response")
        self.buf += data
        while True:
            state, buf = self.state, self.buf
            if state == _HEAD:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > MAX_HEAD_BYTES:
                        raise ProtocolError("response head too large")
                    return None
                head = bytes(buf[:end])
                del buf[:end + 4]
                self._start(head)
            elif state == _LENGTH:
                if len(buf) < self.remaining:
                    return None
                self.parts.append(bytes(buf[:self.remaining]))
                del buf[:self.remaining]
                return self._finish()
            elif state == _CHUNK_SIZE or state == _TRAILERS:
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > MAX_HEAD_BYTES:
                        raise ProtocolError("chunk-size or trailer line too long")
                    return None
                line = bytes(buf[:end])
                del buf[:end + 2]
                if state == _TRAILERS:
                    if not line:
                        return self._finish()
                    continue
                size = line.split(b";", 1)[0].strip()
                if not size or not _HEX.issuperset(size) or len(size) > 16:
                    raise ProtocolError(f"bad chunk size {line[:40]!r}")
                self.remaining = int(size, 16)
                self.state = _CHUNK_DATA if self.remaining else _TRAILERS
            elif state == _CHUNK_DATA:
                n = self.remaining
                if len(buf) < n + 2:
                    return None
                if buf[n:n + 2] != b"\r\n":
                    raise ProtocolError("chunk data not followed by CRLF")
                self.parts.append(bytes(buf[:n]))
                del buf[:n + 2]
                self.state = _CHUNK_SIZE
            elif state == _UNTIL_CLOSE:
                self.parts.append(bytes(buf))
                buf.clear()
                return None

    def close(self) -> Response:
        """The peer closed the connection: the response, if that completes it."""
        if self.state == _UNTIL_CLOSE:
            self.parts.append(bytes(self.buf))
            self.buf.clear()
            return self._finish()
        raise ConnectionClosed("connection closed before the response was complete" if self.started
                               else "connection closed before any response", response_started=self.started)

    def _start(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code, _, reason = rest.partition(" ")
        if version not in ("HTTP/1.1", "HTTP/1.0") or len(code) != 3 or not code.isdigit():
            raise ProtocolError(f"bad status line {lines[0][:80]!r}")
        status = int(code)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip() or line[0] in " \t":
                raise ProtocolError(f"bad header line {line[:80]!r}")
            name, value = name.lower(), value.strip(" \t")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        if 100 <= status < 200:
            if status == 101:
                raise ProtocolError("101 Switching Protocols is not supported")
            return  # interim response: the final one follows
        connection = _tokens(headers.get("connection"))
        keep = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
        self.head = Response(status, reason, headers, b"", version, keep)
        te, cl = headers.get("transfer-encoding"), headers.get("content-length")
        if self.method == "HEAD" or status in (204, 304):
            self.state, self.remaining = _LENGTH, 0
        elif te is not None:
            if [c.strip().lower() for c in te.split(",")] != ["chunked"]:
                raise ProtocolError(f"unsupported Transfer-Encoding {te!r}")
            self.state = _CHUNK_SIZE
        elif cl is not None:
            values = {v.strip() for v in cl.split(",")}
            length = values.pop() if len(values) == 1 else ""
            if not length.isdigit() or len(length) > 18:
                raise ProtocolError(f"bad Content-Length {cl!r}")
            self.state, self.remaining = _LENGTH, int(length)
        else:
            self.state = _UNTIL_CLOSE
            self.head.keep_alive = False

    def _finish(self) -> Response:
        r = self.head
        assert r is not None
        r.content = self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)
        if self.buf:  # nothing was pipelined: extra bytes mean the connection cannot be trusted
            r.keep_alive = False
        self.state = _DONE
        return r
