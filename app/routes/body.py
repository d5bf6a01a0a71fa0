"""Read a request body under a size limit (refuses early on Content-Length)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import Request

from mdm.errors import LimitExceeded, ParseError


def check_declared(declared: str | None, limit: int) -> None:
    """Refuse a Content-Length over ``limit`` before reading anything."""
    if declared is not None:
        try:
            if int(declared) > limit:
                raise LimitExceeded(f"body larger than {limit} bytes")
        except ValueError:
            raise ParseError("invalid Content-Length") from None


async def _collect(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    parts, size = [], 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise LimitExceeded(f"body larger than {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


async def read_body(request: Request, limit: int) -> bytes:
    check_declared(request.headers.get("content-length"), limit)
    return await _collect(request.stream(), limit)


class ClientGone(Exception):
    """The client disconnected before its request body arrived: there is no one to answer."""


async def read_asgi_body(receive: Callable[[], Awaitable[dict]], declared: str | None, limit: int) -> bytes:
    """The body straight from ASGI ``receive`` (for endpoints that bypass the framework)."""
    check_declared(declared, limit)

    async def chunks() -> AsyncIterator[bytes]:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone()
            yield message.get("body", b"")
            if not message.get("more_body", False):
                return

    return await _collect(chunks(), limit)
