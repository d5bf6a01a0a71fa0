"""``com.apple.mobiledevice.passwordpolicy``."""

from __future__ import annotations

from profiles.blueprint.sections import Passcode
from profiles.payloads.common import Namer, payload

PAYLOAD_TYPE = "com.apple.mobiledevice.passwordpolicy"
KEYS = {
    "required": "forcePIN", "min_length": "minLength", "alphanumeric": "requireAlphanumeric",
    "allow_simple": "allowSimple", "min_complex_chars": "minComplexChars",
    "max_failed_attempts": "maxFailedAttempts", "auto_lock_minutes": "maxInactivity",
    "max_age_days": "maxPINAgeInDays", "history": "pinHistory", "grace_minutes": "maxGracePeriod",
}


def passcode_payload(namer: Namer, p: Passcode, display_name: str = "Passcode") -> dict:
    content = {apple: getattr(p, friendly) for friendly, apple in KEYS.items()
               if getattr(p, friendly) is not None}
    return payload(namer, "passcode", PAYLOAD_TYPE, display_name, content)
