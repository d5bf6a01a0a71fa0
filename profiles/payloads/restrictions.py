"""``com.apple.applicationaccess`` from friendly restriction keys plus Apple's raw keys."""

from __future__ import annotations

from profiles.blueprint.restrictions import BOOL_KEYS
from profiles.blueprint.sections import Restrictions
from profiles.payloads.common import Namer, payload

PAYLOAD_TYPE = "com.apple.applicationaccess"


def apple_keys(r: Restrictions) -> dict:
    """Apple's keys for a restrictions section; ``apple:`` entries win."""
    keys: dict = {}
    for friendly, apple in BOOL_KEYS.items():
        value = getattr(r, friendly)
        if value is not None:
            keys[apple] = value
    if r.max_app_rating is not None:
        keys["ratingApps"] = r.rating_apps()
    if r.rating_region is not None:
        keys["ratingRegion"] = r.rating_region
    if r.blocked_apps:
        keys["blockedAppBundleIDs"] = list(r.blocked_apps)
    if r.exam_apps:
        keys["autonomousSingleAppModePermittedAppIDs"] = list(r.exam_apps)
    keys.update(r.apple)
    return keys


def restrictions_payload(namer: Namer, r: Restrictions, display_name: str = "Restrictions") -> dict | None:
    keys = apple_keys(r)
    return payload(namer, "restrictions", PAYLOAD_TYPE, display_name, keys) if keys else None
