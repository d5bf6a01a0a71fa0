"""Errors of the ADE client; ``reason`` is Apple's code (``EXPIRED_CURSOR``, ``T_C_NOT_SIGNED``, ...)."""

from __future__ import annotations

from mdm.errors import MDMError


class ADEError(MDMError):
    """Apple's device assignment service refused or failed a request."""

    status_code = 502
    code = "ade_error"

    def __init__(self, message: str, *, reason: str | None = None, status: int | None = None) -> None:
        super().__init__(message, details={"reason": reason, "status": status})
        self.reason = reason
        self.status = status


class ADEAuthError(ADEError):
    """The server token was rejected (expired, revoked, terms not accepted): upload a new one."""

    code = "ade_auth_failed"


class ADECursorError(ADEError):
    """A fetch or sync cursor is expired, invalid or exhausted: start again with a full fetch."""

    code = "ade_cursor"


class ADERequestError(ADEError):
    """A request Apple answered with 400/404 for another reason (a bug on our side, or bad data)."""

    code = "ade_request_failed"


class ADEUnavailable(ADEError):
    """Still 5xx, 429 or unreachable after every retry: try again later (the cursor is kept)."""

    status_code = 503
    code = "ade_unavailable"
