"""The ADE enrollment profile of a school, as ``POST /profile`` takes it.

One per school: Setup Assistant fetches the school's enrollment URL, the device is supervised,
waits in Setup Assistant until the server sends DeviceConfigured, and cannot remove management.
Language and region come from the school's blueprint (``SchoolBuild.locale``). The panes a
pupil never needs are skipped; the Wi-Fi, language/region and "Remote Management" panes stay.
"""

from __future__ import annotations

import base64
import hashlib
import json

from cryptography.hazmat.primitives.serialization import Encoding

from profiles.blueprint.models import Settings as BlueprintSettings

#: Setup Assistant panes skipped for pupils' iPads (Apple's SkipKeys names)
PUPIL_SKIP_SETUP_ITEMS: tuple[str, ...] = (
    "Accessibility", "ActionButton", "Android", "Appearance", "AppleID", "AppStore", "Biometric", "CameraButton",
    "DeviceToDeviceMigration", "Diagnostics", "DisplayTone", "EnableLockdownMode", "HomeButtonSensitivity",
    "iCloudDiagnostics", "iCloudStorage", "iMessageAndFaceTime", "Intelligence", "Keyboard", "Location",
    "MessagingActivationUsingPhoneNumber", "OnBoarding", "Passcode", "Payment", "Privacy", "Restore",
    "RestoreCompleted", "Safety", "ScreenSaver", "ScreenTime", "SIMSetup", "Siri", "SoftwareUpdate",
    "SpokenLanguage", "TapToSetup", "TermsOfAddress", "TOS", "UpdateCompleted", "Wallpaper", "WatchMigration",
    "Welcome", "Zoom",
)


def enroll_url(public_url: str, school_id: str) -> str:
    return f"{public_url.rstrip('/')}/enroll/ade/{school_id}"


def ade_profile(settings, pki, school_id: str, school_name: str, locale: BlueprintSettings | None) -> dict:
    """The profile definition for ``school_id`` (``locale``: the blueprint's settings, or defaults)."""
    loc = locale or BlueprintSettings()
    p = {
        "profile_name": f"{school_name} ({settings.org_name})"[:255],
        "url": enroll_url(settings.public_url, school_id),
        "is_supervised": True,
        "allow_pairing": False,
        "is_mandatory": True,
        "await_device_configured": True,
        "is_mdm_removable": False,
        "auto_advance_setup": False,
        "skip_setup_items": list(PUPIL_SKIP_SETUP_ITEMS),
        "department": school_name[:255],
        "org_magic": school_id,
        "language": loc.language,
        "region": loc.region,
    }
    if settings.ade_support_phone:
        p["support_phone_number"] = settings.ade_support_phone
    if settings.ade_support_email:
        p["support_email_address"] = settings.ade_support_email
    if settings.tls:  # we serve the development certificate: Setup Assistant must trust our CA for the URL
        p["anchor_certs"] = [base64.b64encode(pki.ca.cert.public_bytes(Encoding.DER)).decode()]
    return p


def content_hash(profile: dict) -> str:
    return hashlib.sha256(json.dumps(profile, sort_keys=True).encode()).hexdigest()
