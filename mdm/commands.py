"""MDM commands (server → device) and reports (device → server on ``/mdm/connect``).

Command classes carry Apple's ``RequestType`` names. A command is serialized
once to plist bytes and those bytes are what the queue stores and serves.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mdm import plist
from mdm.errors import ParseError, UnknownMessageType, ValidationFailed

DEVICE_INFORMATION_QUERIES = [
    "UDID", "DeviceName", "OSVersion", "BuildVersion", "ModelName", "Model", "ProductName",
    "SerialNumber", "DeviceCapacity", "AvailableDeviceCapacity", "BatteryLevel",
    "WiFiMAC", "BluetoothMAC", "IsSupervised", "IsDeviceLocatorServiceEnabled",
    "IsActivationLockEnabled", "IsCloudBackupEnabled", "IsMDMLostModeEnabled",
    "IsMultiUser", "TimeZone", "Languages", "Locales",
]


@dataclass
class Command:
    """A command: its RequestType plus Apple's keys for it."""

    request_type: ClassVar[str] = ""
    #: keys that must be present, checked before enqueue
    required: ClassVar[tuple[str, ...]] = ()
    #: safe for the support desk (read-only or harmless)
    safe: ClassVar[bool] = False
    #: re-running it twice has no additional effect
    idempotent: ClassVar[bool] = True

    params: dict[str, Any] = field(default_factory=dict)
    command_uuid: str = field(default_factory=lambda: str(uuid.uuid4()).upper())

    def validate(self) -> None:
        missing = [k for k in self.required if k not in self.params]
        if missing:
            raise ValidationFailed(
                f"{self.request_type} needs {', '.join(missing)}", details={"missing": missing}
            )

    def to_dict(self) -> dict:
        self.validate()
        return {"CommandUUID": self.command_uuid, "Command": {"RequestType": self.request_type, **self.params}}

    def to_plist(self) -> bytes:
        return plist.dumps(self.to_dict())


_REGISTRY: dict[str, type[Command]] = {}


def _register(name: str, *, required: tuple[str, ...] = (), safe: bool = False, idempotent: bool = True):
    cls = type(name, (Command,), {"request_type": name, "required": required, "safe": safe, "idempotent": idempotent})
    _REGISTRY[name] = cls
    return cls


# Apple's RequestType names. Queries & inventory
DeviceInformation = _register("DeviceInformation", required=("Queries",), safe=True)
SecurityInfo = _register("SecurityInfo", safe=True)
ProfileList = _register("ProfileList", safe=True)
InstalledApplicationList = _register("InstalledApplicationList", safe=True)
ManagedApplicationList = _register("ManagedApplicationList", safe=True)
CertificateList = _register("CertificateList", safe=True)
ProvisioningProfileList = _register("ProvisioningProfileList", safe=True)
Restrictions = _register("Restrictions", safe=True)
# Profiles
InstallProfile = _register("InstallProfile", required=("Payload",))
RemoveProfile = _register("RemoveProfile", required=("Identifier",))
# Apps
InstallApplication = _register("InstallApplication")
RemoveApplication = _register("RemoveApplication", required=("Identifier",))
# Settings & setup
Settings = _register("Settings", required=("Settings",))
DeviceConfigured = _register("DeviceConfigured")
# Security actions
DeviceLock = _register("DeviceLock", safe=True, idempotent=False)
EraseDevice = _register("EraseDevice", idempotent=False)
ClearPasscode = _register("ClearPasscode", required=("UnlockToken",), idempotent=False)
RestartDevice = _register("RestartDevice", idempotent=False)
ShutDownDevice = _register("ShutDownDevice", idempotent=False)
EnableLostMode = _register("EnableLostMode")
DisableLostMode = _register("DisableLostMode")
PlayLostModeSound = _register("PlayLostModeSound", safe=True, idempotent=False)
DeviceLocation = _register("DeviceLocation")


def command_class(request_type: str) -> type[Command]:
    try:
        return _REGISTRY[request_type]
    except KeyError:
        raise UnknownMessageType(
            f"unknown RequestType {request_type!r}",
            details={"known": sorted(_REGISTRY)},
        ) from None


def known_request_types() -> list[str]:
    return sorted(_REGISTRY)


def new_command(request_type: str, params: dict | None = None, *, command_uuid: str | None = None) -> Command:
    """Build a command by RequestType with sensible defaults for the common ones."""
    cls = command_class(request_type)
    params = dict(params or {})
    if request_type == "DeviceInformation":
        params.setdefault("Queries", list(DEVICE_INFORMATION_QUERIES))
    if request_type == "ProfileList":
        params.setdefault("ManagedOnly", False)
    if request_type == "InstalledApplicationList":
        params.setdefault("ManagedAppsOnly", False)
    kw = {"command_uuid": command_uuid} if command_uuid else {}
    cmd = cls(params=params, **kw)
    cmd.validate()
    try:  # parameters from a request: what a plist cannot carry (null, control characters, huge integers)
        plist.dumps(params)
    except (TypeError, ValueError, OverflowError) as e:
        raise ValidationFailed(f"{request_type} parameters cannot be sent in a plist: {e}") from None
    return cmd


# --- reports --------------------------------------------------------------

REPORT_STATUSES = ("Idle", "Acknowledged", "Error", "CommandFormatError", "NotNow")


@dataclass(frozen=True)
class Report:
    """A device's report on ``/mdm/connect``."""

    udid: str
    status: str
    command_uuid: str | None
    error_chain: list | None
    raw: bytes = field(repr=False)
    plist: dict = field(repr=False)

    @property
    def is_idle(self) -> bool:
        return self.status == "Idle"

    def result(self) -> dict:
        """The result keys (everything but the envelope)."""
        skip = {"UDID", "Status", "CommandUUID", "ErrorChain", "EnrollmentID", "EnrollmentUserID", "UserID"}
        return {k: v for k, v in self.plist.items() if k not in skip}


def parse_report(raw: bytes, **limits: Any) -> Report:
    d = plist.loads_dict(raw, **limits)
    udid = d.get("UDID")
    if not isinstance(udid, str) or not udid:
        if d.get("EnrollmentID") or d.get("UserID"):
            raise ParseError("user channel reports are not supported; send the device UDID")
        raise ParseError("report lacks UDID")
    status = d.get("Status")
    if status not in REPORT_STATUSES:
        raise ParseError(f"report Status must be one of {', '.join(REPORT_STATUSES)}")
    cu = d.get("CommandUUID")
    if status != "Idle":
        if not isinstance(cu, str) or not cu or len(cu) > 128:
            raise ParseError(f"a {status} report needs a CommandUUID")
    elif cu is not None and not isinstance(cu, str):
        raise ParseError("CommandUUID must be a string")
    chain = d.get("ErrorChain")
    if chain is not None and not isinstance(chain, list):
        raise ParseError("ErrorChain must be an array")
    return Report(udid=udid, status=status, command_uuid=cu if status != "Idle" else None,
                  error_chain=chain, raw=raw, plist=d)


def parse_command(raw: bytes) -> tuple[str, dict]:
    """Device side: parse a command plist into (CommandUUID, Command dict)."""
    d = plist.loads_dict(raw)
    cu, cmd = d.get("CommandUUID"), d.get("Command")
    if not isinstance(cu, str) or not isinstance(cmd, dict) or not isinstance(cmd.get("RequestType"), str):
        raise ParseError("not an MDM command")
    return cu, cmd


def build_report(udid: str, status: str, command_uuid: str | None = None, **result: Any) -> bytes:
    d: dict[str, Any] = {"UDID": udid, "Status": status}
    if command_uuid:
        d["CommandUUID"] = command_uuid
    d.update(result)
    return plist.dumps(d)
