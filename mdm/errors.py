"""One error hierarchy for the whole MDM side.

Every error knows the HTTP status it maps to; the single exception handler in
``app.errors`` turns them into replies. Protocol code raises these and never
imports a web framework.
"""

from __future__ import annotations


class MDMError(Exception):
    """Base of every error schoolmdm raises on purpose."""

    status_code = 400
    code = "mdm_error"

    def __init__(self, message: str, *, details: dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class ParseError(MDMError):
    """The body is not a well-formed message (plist, CMS, SCEP, CSR, ...)."""

    code = "parse_error"


class LimitExceeded(MDMError):
    """A body, nesting depth or similar limit was exceeded."""

    status_code = 413
    code = "limit_exceeded"


class UnknownMessageType(MDMError):
    """A check-in MessageType or command RequestType we do not know."""

    code = "unknown_message_type"


class UnsupportedMessageType(MDMError):
    """A known message type schoolmdm deliberately does not serve (yet)."""

    status_code = 400
    code = "unsupported_message_type"


class Gone(MDMError):
    """A message type that is known but never served (UserAuthenticate)."""

    status_code = 410
    code = "gone"


class CertAuthError(MDMError):
    """Mdm-Signature missing, invalid, or not from the bound certificate."""

    status_code = 401
    code = "cert_auth_failed"


class CertMismatch(CertAuthError):
    """A valid certificate, but not the one bound to this enrollment."""

    status_code = 403
    code = "cert_mismatch"


class EnrollmentError(MDMError):
    """Enrollment refused: bad token, unknown school, replayed challenge."""

    status_code = 403
    code = "enrollment_refused"


class NotEnrolled(MDMError):
    """A message for a device that has not (or no longer) enrolled."""

    status_code = 403
    code = "not_enrolled"


class UnknownCommand(MDMError):
    """A report names a CommandUUID never sent to this device."""

    status_code = 400
    code = "unknown_command"


class NotFound(MDMError):
    status_code = 404
    code = "not_found"


class Conflict(MDMError):
    status_code = 409
    code = "conflict"


class Forbidden(MDMError):
    status_code = 403
    code = "forbidden"


class Unauthorized(MDMError):
    status_code = 401
    code = "unauthorized"


class ValidationFailed(MDMError):
    status_code = 422
    code = "validation_failed"


class RateLimited(MDMError):
    status_code = 429
    code = "rate_limited"


class Unavailable(MDMError):
    status_code = 503
    code = "unavailable"
