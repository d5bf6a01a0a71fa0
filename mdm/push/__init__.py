"""I/O with Apple's push service (APNs). The only ``mdm`` package besides ``mdm.ade`` that uses httpx."""

from __future__ import annotations

from mdm.push.apns import APPLE_PRODUCTION, APPLE_SANDBOX, APNsClient, PushResult, PushTarget

__all__ = ["APPLE_PRODUCTION", "APPLE_SANDBOX", "APNsClient", "PushResult", "PushTarget"]
