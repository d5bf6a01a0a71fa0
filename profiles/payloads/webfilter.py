"""``com.apple.webcontent-filter`` (built-in filter).

Uses the current key names (iOS 14.5+): ``DenyListURLs`` and
``AllowListBookmarks``; the deprecated ``BlacklistedURLs`` and
``WhitelistedBookmarks`` are never written.
"""

from __future__ import annotations

from profiles.blueprint.sections import WebFilter
from profiles.payloads.common import Namer, payload

PAYLOAD_TYPE = "com.apple.webcontent-filter"


def webfilter_payload(namer: Namer, wf: WebFilter, display_name: str = "Web filter") -> dict | None:
    """None when the section filters nothing."""
    if not wf.enabled:
        return None
    content: dict = {"FilterType": "BuiltIn"}
    if wf.bookmarks:
        content["AllowListBookmarks"] = [{"URL": b.url, "Title": b.title} for b in wf.bookmarks]
    else:
        content["AutoFilterEnabled"] = True
        if wf.permitted_urls:
            content["PermittedURLs"] = list(wf.permitted_urls)
        if wf.denied_urls:
            content["DenyListURLs"] = list(wf.denied_urls)
    return payload(namer, "webfilter", PAYLOAD_TYPE, display_name, content)
