"""Uvicorn's HTTP/1.1 protocol with each response written to the socket in one piece.

Uvicorn writes a response's status line and headers when the app sends ``http.response.start``,
and the body with ``http.response.body``: two writes, so over TLS two records and two ``send``
calls per response, on the server and again (two reads) on the device. Every device request
has a small response, so this was ~15% of a worker's CPU in the command round-trip profile
(``BENCHMARKS.md``, "Sixth session").

``CoalescingTransport`` keeps what is written during one turn of the event loop and hands it to
the real transport in one ``write`` at the end of that turn (``call_soon``); the status line and
headers of a response and its body are sent in the same turn. Closing flushes first; a large
body (over ``FLUSH_AT``) goes at once; aborting drops what was held, as the real transport would.
"""

from __future__ import annotations

import asyncio

try:  # uvicorn[standard] brings httptools; without it uvicorn's own choice ("auto") is used
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover
    HttpToolsProtocol = None

FLUSH_AT = 64 * 1024


class CoalescingTransport:
    """A transport that joins the writes of one event-loop turn; everything else is the real one's."""

    __slots__ = ("_transport", "_loop", "_held", "_size")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] | None = None
        self._size = 0

    def write(self, data: bytes) -> None:
        if not data:
            return
        if self._held is None:
            self._held = [data]
            self._size = len(data)
            self._loop.call_soon(self.flush)
        else:
            self._held.append(data)
            self._size += len(data)
        if self._size >= FLUSH_AT:
            self.flush()

    def writelines(self, chunks) -> None:
        for data in chunks:
            self.write(data)

    def flush(self) -> None:
        held, self._held, self._size = self._held, None, 0
        if held and not self._transport.is_closing():
            self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._held, self._size = None, 0
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + self._size

    def __getattr__(self, name: str):
        return getattr(self._transport, name)


if HttpToolsProtocol is not None:
    class CoalescingHttpToolsProtocol(HttpToolsProtocol):
        """``HttpToolsProtocol`` writing through a ``CoalescingTransport``."""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(CoalescingTransport(transport, self.loop))

    HTTP_PROTOCOL: type[asyncio.Protocol] | str = CoalescingHttpToolsProtocol
else:  # pragma: no cover
    HTTP_PROTOCOL = "auto"
