"""Uvicorn's HTTP/1.1 protocol with each response written to the socket in one piece.

Uvicorn writes a response's status line and headers when the app sends ``http.response.start``,
and the body with ``http.response.body``: two writes, so over TLS two records and two ``send``
calls per response, on the server and again (two reads) on the device. Every device request
has a small response, so this was ~15% of a worker's CPU in the command round-trip profile
(``BENCHMARKS.md``, "Sixth session").

``CoalescingTransport`` holds one write back until the next: uvicorn writes a response's head
and then, at once, its body (``b""`` for an empty one), so head and body reach the real transport
in one ``write`` with no delay. What is still held when the event loop's turn ends (a head whose
body is slow to come, the last chunk of a stream) is written then (``call_soon``). Closing
flushes first; aborting drops what was held, as the real transport would.
"""

from __future__ import annotations

import asyncio

try:  # uvicorn[standard] brings httptools; without it uvicorn's own choice ("auto") is used
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover
    HttpToolsProtocol = None


class CoalescingTransport:
    """A transport that joins each write to the next one; everything else is the real one's."""

    __slots__ = ("_transport", "_loop", "_held")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is None:
            if data:
                self._held = bytes(data)
                self._loop.call_soon(self.flush)
            return
        self._held = None
        if not self._transport.is_closing():
            self._transport.write(held + data if data else held)

    def writelines(self, chunks) -> None:
        for data in chunks:
            self.write(data)

    def flush(self) -> None:
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + len(self._held or b"")

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
