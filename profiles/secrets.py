"""Which profiles carry secrets, and masking them for display (diffs, logs, API output)."""

from __future__ import annotations

import hashlib
from typing import Any

SECRET_KEYS = frozenset(k.lower() for k in ("Password", "UserPassword", "PEAPPassword",
                                             "PayloadCertificatePassword", "Challenge", "PreSharedKey",
                                             "Secret", "EnrollToken", "pkcs12"))
SECRET_PAYLOADS = frozenset({"com.apple.security.pkcs12"})
MASK = "••••••"


def has_secrets(obj: Any) -> bool:
    """True when a profile (or any part of it) holds a password, a PSK or a private key."""
    if isinstance(obj, dict):
        if obj.get("PayloadType") in SECRET_PAYLOADS:
            return True
        return any(str(k).lower() in SECRET_KEYS or has_secrets(v) for k, v in obj.items())
    if isinstance(obj, list):
        return any(has_secrets(v) for v in obj)
    return False


def _mask(value: Any, tell_changes: bool) -> str:
    if not tell_changes:
        return MASK
    # a short, truncated digest only shows *that* a secret changed between two versions
    raw = value if isinstance(value, bytes) else repr(value).encode()
    return f"{MASK} ({hashlib.sha256(raw).hexdigest()[:6]})"


def masked(obj: Any, *, tell_changes: bool = False) -> Any:
    """A copy with every secret value replaced (and private key material dropped)."""
    if isinstance(obj, dict):
        secret_payload = obj.get("PayloadType") in SECRET_PAYLOADS
        return {k: _mask(v, tell_changes) if (str(k).lower() in SECRET_KEYS and v is not None)
                or (secret_payload and k == "PayloadContent") else masked(v, tell_changes=tell_changes)
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [masked(v, tell_changes=tell_changes) for v in obj]
    return obj
