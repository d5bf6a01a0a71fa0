"""The device actions the dashboard offers, by role (the rule itself is app.api.auth.may_queue,
shared with ``POST /api/v1/commands``). School scope is ``Principal.require_school``."""

from __future__ import annotations

from dataclasses import dataclass

from app.api.auth import Principal, may_queue, require_queue
from mdm.errors import ValidationFailed

MAX_MESSAGE = 200
MAX_PHONE = 32


def authorize_device_command(me: Principal, request_type: str, device: dict) -> None:
    """Role and school scope for one command to one device."""
    require_queue(me, request_type)
    me.require_school(device["school_id"])


@dataclass(frozen=True)
class Action:
    request_type: str
    label: str
    help: str
    fields: tuple[str, ...] = ()  # message, phone, identifier, confirm
    danger: bool = False


ACTIONS: tuple[Action, ...] = (
    Action("DeviceInformation", "Refresh inventory", "Ask the iPad for its current inventory."),
    Action("SecurityInfo", "Security info", "Passcode, encryption and management state."),
    Action("ProfileList", "List profiles", "Ask which profiles are installed."),
    Action("InstalledApplicationList", "List apps", "Ask which apps are installed."),
    Action("DeviceLock", "Lock", "Lock the screen, with a message on the lock screen.", ("message", "phone")),
    Action("PlayLostModeSound", "Play Lost Mode sound", "Only while the iPad is in Lost Mode."),
    Action("EnableLostMode", "Enable Lost Mode", "Needs a message or a phone number.", ("message", "phone")),
    Action("DisableLostMode", "Disable Lost Mode", "Leave Lost Mode."),
    Action("RemoveProfile", "Remove profile", "Remove one installed profile.", ("identifier",)),
    Action("RestartDevice", "Restart", "Restart the iPad now.", danger=True),
    Action("ShutDownDevice", "Shut down", "Turn the iPad off.", danger=True),
    Action("EraseDevice", "Erase", "Erase all content and settings. Type the serial number to confirm.",
           ("confirm",), danger=True),
)
BY_TYPE = {a.request_type: a for a in ACTIONS}


def offered(me: Principal) -> list[Action]:
    """The actions this principal's role may use (the form offers nothing else)."""
    return [a for a in ACTIONS if may_queue(me, a.request_type)]


def action_params(request_type: str, form: dict, device: dict) -> dict:
    """Apple's keys for a dashboard action from its form fields; refuses a form that is not valid."""
    action = BY_TYPE.get(request_type)
    if action is None:
        raise ValidationFailed(f"{request_type} is not an action of the dashboard")
    message = (form.get("message") or "").strip()
    phone = (form.get("phone") or "").strip()
    if len(message) > MAX_MESSAGE or len(phone) > MAX_PHONE:
        raise ValidationFailed(f"the message is limited to {MAX_MESSAGE} and the phone number to {MAX_PHONE} characters")
    params: dict = {}
    if "message" in action.fields and message:
        params["Message"] = message
    if "phone" in action.fields and phone:
        params["PhoneNumber"] = phone
    if request_type == "EnableLostMode" and not params:
        raise ValidationFailed("Lost Mode needs a message or a phone number")
    if "identifier" in action.fields:
        ident = (form.get("identifier") or "").strip()
        if not ident or len(ident) > 255:
            raise ValidationFailed("choose the profile to remove")
        params["Identifier"] = ident
    if "confirm" in action.fields:
        typed = (form.get("confirm") or "").strip().upper()
        if not device.get("serial") or typed != device["serial"].upper():
            raise ValidationFailed("type the device's serial number to confirm erasing it")
    return params
