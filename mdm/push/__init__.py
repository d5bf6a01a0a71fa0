"""I/O with Apple's push service (APNs): HTTP/2 spoken with ``h2`` on asyncio + ssl, no HTTP client library."""

from __future__ import annotations

from mdm.push.apns import APPLE_PRODUCTION, APPLE_SANDBOX, APNsClient, PushResult, PushTarget

__all__ = ["APPLE_PRODUCTION", "APPLE_SANDBOX", "APNsClient", "PushResult", "PushTarget"]
