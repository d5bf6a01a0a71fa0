"""Read a request body under a size limit (refuses early on Content-Length)."""

from __future__ import annotations

from fastapi import Request

from mdm.errors import LimitExceeded, ParseError


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise LimitExceeded(f"body larger than {limit} bytes")
        except ValueError:
            raise ParseError("invalid Content-Length") from None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise LimitExceeded(f"body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
