"""``com.apple.notificationsettings``: per-app notification settings (supervised only)."""

from __future__ import annotations

from profiles.blueprint.sections import Notification
from profiles.payloads.common import Namer, payload

PAYLOAD_TYPE = "com.apple.notificationsettings"
ALERTS = {"none": 0, "banner": 1, "persistent": 2}
PREVIEWS = {"always": 0, "unlocked": 1, "never": 2}
GROUPING = {"automatic": 0, "by_app": 1, "off": 2}
_FLAGS = {
    "badges": "BadgesEnabled", "sounds": "SoundsEnabled", "lock_screen": "ShowInLockScreen",
    "notification_center": "ShowInNotificationCenter", "critical_alerts": "CriticalAlertEnabled",
}


def notification_item(bundle_id: str, n: Notification) -> dict:
    item: dict = {"BundleIdentifier": bundle_id, "NotificationsEnabled": n.enabled}
    if n.alerts is not None:
        item["AlertType"] = ALERTS[n.alerts]
    for friendly, apple in _FLAGS.items():
        value = getattr(n, friendly)
        if value is not None:
            item[apple] = value
    if n.previews is not None:
        item["PreviewType"] = PREVIEWS[n.previews]
    if n.grouping is not None:
        item["GroupingType"] = GROUPING[n.grouping]
    return item


def notifications_payload(namer: Namer, settings: dict[str, Notification],
                          display_name: str = "Notifications") -> dict | None:
    if not settings:
        return None
    items = [notification_item(b, settings[b]) for b in sorted(settings)]
    return payload(namer, "notifications", PAYLOAD_TYPE, display_name, {"NotificationSettings": items})
