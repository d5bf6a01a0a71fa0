"""``com.apple.app.lock``: single-app mode, used for exams (supervised only)."""

from __future__ import annotations

from profiles.blueprint.sections import Exam
from profiles.payloads.common import Namer, payload

PAYLOAD_TYPE = "com.apple.app.lock"
USER_OPTIONS = {"voice_over": "VoiceOver", "zoom": "Zoom", "invert_colors": "InvertColors",
                "assistive_touch": "AssistiveTouch", "voice_control": "VoiceControl"}


def applock_payload(namer: Namer, exam: Exam, display_name: str = "Exam mode") -> dict:
    app: dict = {"Identifier": exam.bundle_id}
    if exam.disable_auto_lock:
        app["Options"] = {"DisableAutoLock": True}
    if exam.user_options:
        app["UserEnabledOptions"] = {USER_OPTIONS[o]: True for o in exam.user_options}
    return payload(namer, "applock", PAYLOAD_TYPE, display_name, {"App": app})
