"""``com.apple.homescreenlayout``: dock and pages of apps and folders (supervised only)."""

from __future__ import annotations

from profiles.blueprint.sections import HomeItem, HomeScreen
from profiles.payloads.common import Namer, payload

PAYLOAD_TYPE = "com.apple.homescreenlayout"


def icon(item: HomeItem) -> dict:
    if item.app is not None:
        return {"Type": "App", "BundleID": item.app}
    return {"Type": "Folder", "DisplayName": item.folder,
            "Pages": [[icon(i) for i in page] for page in item.pages]}


def homescreen_payload(namer: Namer, hs: HomeScreen, display_name: str = "Home Screen") -> dict | None:
    if not hs.dock and not hs.pages:
        return None
    content = {
        "Dock": [icon(i) for i in hs.dock],
        "Pages": [[icon(i) for i in page] for page in hs.pages],
    }
    return payload(namer, "homescreen", PAYLOAD_TYPE, display_name, content)
