"""A virtual iPad: its state, its check-in messages and how it executes MDM commands.

Pure (no I/O): ``handle_command(raw) -> report bytes`` is all the network side needs.
Behaviour knobs for tests: ``not_now_once`` (RequestTypes answered NotNow the first
time each command of that type is seen, and again if resent in that same session; the
device asks to be retried and executes it on a later connect) and double-application accounting (``applied`` counts executions
per CommandUUID; re-executing a non-idempotent command, or re-installing the same
profile UUID through the same CommandUUID, increments ``double_applications``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import uuid
from collections import Counter
from collections.abc import Callable, Iterable

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from mdm import plist
from mdm.checkin import build_checkin
from mdm.commands import build_report, parse_command
from mdm.errors import MDMError
from mdm.pki import utcnow
from profiles.encryption import decrypt_profile
from profiles.signing import verify_profile
from simulator import inventory
from simulator.inventory import (
    BAD_SIGNATURE, BAD_TYPE, CANNOT_DECRYPT, CATALOG, INSTALL_FAILED, MALFORMED, PREINSTALLED, TIME_ZONE,
    Hardware,
)

NON_IDEMPOTENT = frozenset({"DeviceLock", "EraseDevice", "RestartDevice", "ShutDownDevice",
                            "PlayLostModeSound", "ClearPasscode"})
PROFILE_DOMAIN = "MCProfileErrorDomain"
MDM_DOMAIN = "MCMDMErrorDomain"
# MCMDMErrorDomain codes
UNKNOWN_COMMAND, NOT_INSTALLED, NOT_MANAGED, NOT_SUPERVISED, NOT_LOST = 12021, 12004, 12029, 12036, 12067
SIMPLE_SETTINGS = frozenset({
    "HostName", "Wallpaper", "OrganizationInfo", "MDMOptions", "ApplicationAttributes",
    "ApplicationConfiguration", "SoftwareUpdateSettings", "AccessibilitySettings", "AppAnalytics",
    "DiagnosticSubmission", "DefaultApplications", "SharedDeviceConfiguration", "MaximumResidentUsers",
    "TemporarySessionSettings", "VoiceRoaming", "DataRoaming", "Bluetooth", "PersonalHotspot",
})


def error_chain(code: int, domain: str, text: str) -> list[dict]:
    return [{"ErrorCode": code, "ErrorDomain": domain, "LocalizedDescription": text, "USEnglishDescription": text}]


class CommandFailed(Exception):
    """Raised by a command handler: the report gets ``status`` and an ErrorChain."""

    def __init__(self, code: int, domain: str, text: str, *, status: str = "Error", result: dict | None = None):
        super().__init__(text)
        self.status = status
        self.chain = error_chain(code, domain, text)
        self.result = result or {}


def _format_error(text: str) -> CommandFailed:
    return CommandFailed(BAD_TYPE, MDM_DOMAIN, text, status="CommandFormatError")


_HANDLERS: dict[str, Callable[[VirtualIPad, str, dict], dict]] = {}


def _handles(*names: str):
    def deco(fn):
        for n in names:
            _HANDLERS[n] = fn
        return fn
    return deco


def handled_request_types() -> list[str]:
    return sorted(_HANDLERS)


class VirtualIPad:
    def __init__(self, hardware: Hardware, *, not_now_once: Iterable[str] = (), supervised: bool = True,
                 awaiting_configuration: bool = False, require_signed_profiles: bool = True,
                 clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.hw = hardware
        self.udid, self.serial = hardware.udid, hardware.serial
        self.not_now_once = set(not_now_once)
        self.require_signed_profiles = require_signed_profiles
        self.clock = clock
        # identity and enrollment (set by ``enroll``)
        self.key: rsa.RSAPrivateKey | None = None
        self.cert: x509.Certificate | None = None
        self.ca_cert: x509.Certificate | None = None
        self.topic: str | None = None
        self.server_url: str | None = None
        self.checkin_url: str | None = None
        self.enrollment_profile: dict | None = None
        self.enrolled = False
        self.token = os.urandom(32)
        self.push_magic = str(uuid.uuid4()).upper()
        self.unlock_token = os.urandom(128)
        # what the device is
        self.state: dict = {
            "device_name": "iPad", "time_zone": TIME_ZONE, "supervised": supervised, "lost_mode": False,
            "awaiting_configuration": awaiting_configuration, "passcode_present": True, "settings": {},
            "apps": {e["Identifier"]: e for e in map(inventory.app_entry, PREINSTALLED)},
        }
        self.managed_apps: dict[str, dict] = {}
        self.profiles: dict[str, dict] = {}  # PayloadIdentifier -> profile (decrypted)
        self.profile_meta: dict[str, dict] = {}
        # accounting
        self.commands: Counter[tuple[str, str]] = Counter()  # (RequestType, Status)
        self.applied: Counter[str] = Counter()  # CommandUUID -> successful executions
        self.actions: Counter[str] = Counter()  # DeviceLock, EraseDevice, ... performed
        self.double_applications = 0
        self.history: list[tuple[str, str, str]] = []  # (CommandUUID, RequestType, Status)
        self.erased = False
        self.needs_retry = False
        self.session = 0  # connect sessions begun
        self._deferred: dict[str, int] = {}  # CommandUUID answered NotNow -> in which session
        self._installed_by: dict[str, str] = {}  # CommandUUID -> PayloadUUID
        self._idle: bytes | None = None

    @property
    def device_name(self) -> str:
        return self.state["device_name"]

    @property
    def awaiting_configuration(self) -> bool:
        return self.state["awaiting_configuration"]

    # -- enrollment and check-in ---------------------------------------------------------
    def enroll(self, *, key: rsa.RSAPrivateKey, cert: x509.Certificate, ca_cert: x509.Certificate,
               topic: str, server_url: str, checkin_url: str, profile: dict | None = None) -> None:
        """Install the identity from SCEP and the MDM payload's settings."""
        self.key, self.cert, self.ca_cert = key, cert, ca_cert
        self.topic, self.server_url, self.checkin_url = topic, server_url, checkin_url
        self.enrollment_profile = profile
        self.enrolled, self.erased = True, False
        self._idle = None

    def authenticate_message(self) -> bytes:
        hw = self.hw
        return build_checkin("Authenticate", self.udid, Topic=self.topic, SerialNumber=hw.serial,
                             ProductName=hw.product_name, Model=hw.model, ModelName="iPad",
                             OSVersion=hw.os_version, BuildVersion=hw.build_version,
                             DeviceName=self.device_name, IMEI=hw.imei)

    def token_update_message(self) -> bytes:
        extra = {"AwaitingConfiguration": True} if self.awaiting_configuration else {}
        return build_checkin("TokenUpdate", self.udid, Topic=self.topic, Token=self.token,
                             PushMagic=self.push_magic, UnlockToken=self.unlock_token, **extra)

    def checkout_message(self) -> bytes:
        return build_checkin("CheckOut", self.udid, Topic=self.topic)

    def idle_report(self) -> bytes:
        """The Idle report: the same bytes every time (so its signature can be cached)."""
        if self._idle is None:
            self._idle = build_report(self.udid, "Idle")
        return self._idle

    def begin_session(self) -> None:
        """Start of a connect session: app installs queued earlier have finished."""
        self.session += 1
        self.needs_retry = False
        for ident, managed in self.managed_apps.items():
            if managed["Status"] == "Installing":
                managed["Status"] = "Managed"
                self.state["apps"][ident]["Installing"] = False

    # -- commands ------------------------------------------------------------------------
    def handle_command(self, raw: bytes) -> bytes:
        """A command plist from the server -> the report plist to send back.

        A body that is not a command at all raises ``mdm.errors.ParseError`` when it has no
        CommandUUID to answer with; otherwise the report is a CommandFormatError.
        """
        try:
            command_uuid, command = parse_command(raw)
        except MDMError:
            d = plist.loads_dict(raw)
            command_uuid = d.get("CommandUUID")
            if not isinstance(command_uuid, str) or not command_uuid:
                raise
            self._record(command_uuid, "?", "CommandFormatError")
            return build_report(self.udid, "CommandFormatError", command_uuid)
        status, result = self.execute(command_uuid, command)
        return build_report(self.udid, status, command_uuid, **result)

    def execute(self, command_uuid: str, command: dict) -> tuple[str, dict]:
        """Run one command; return (Status, result keys)."""
        rt = command.get("RequestType", "")
        deferred_in = self._deferred.get(command_uuid)
        if rt in self.not_now_once and (deferred_in is None or deferred_in == self.session):
            # first sight, or sent again in the same session: the condition still holds
            self._deferred[command_uuid] = self.session
            self.needs_retry = True
            self._record(command_uuid, rt, "NotNow")
            return "NotNow", {}
        handler = _HANDLERS.get(rt)
        previous_profile = self._installed_by.get(command_uuid)
        try:
            if handler is None:
                raise CommandFailed(UNKNOWN_COMMAND, MDM_DOMAIN, f"Unknown command “{rt}”.")
            result = handler(self, command_uuid, command)
        except CommandFailed as e:
            self._record(command_uuid, rt, e.status)
            return e.status, {**e.result, "ErrorChain": e.chain}
        self.applied[command_uuid] += 1
        if self.applied[command_uuid] > 1 and (
            rt in NON_IDEMPOTENT
            or (rt == "InstallProfile" and previous_profile == self._installed_by.get(command_uuid))
        ):
            self.double_applications += 1
        self._record(command_uuid, rt, "Acknowledged")
        return "Acknowledged", result

    def _record(self, command_uuid: str, rt: str, status: str) -> None:
        self.commands[(rt, status)] += 1
        self.history.append((command_uuid, rt, status))

    def acknowledged(self, request_type: str) -> int:
        return self.commands[(request_type, "Acknowledged")]

    # -- profiles ------------------------------------------------------------------------
    def _open_profile(self, payload: bytes) -> tuple[bytes, bool]:
        head = payload.lstrip()[:8]
        if head.startswith((b"<", b"bplist")):
            if self.require_signed_profiles:
                raise CommandFailed(BAD_SIGNATURE, PROFILE_DOMAIN, "The profile is not signed.")
            return payload, False
        if self.ca_cert is None:
            raise CommandFailed(BAD_SIGNATURE, PROFILE_DOMAIN, "No trusted certificate to verify the profile.")
        try:
            return verify_profile(payload, self.ca_cert, clock=self.clock), True
        except MDMError as e:
            raise CommandFailed(BAD_SIGNATURE, PROFILE_DOMAIN,
                                f"The profile signature could not be verified: {e.message}") from None

    def _read_profile(self, payload: bytes) -> tuple[dict, bool, bool]:
        content, signed = self._open_profile(payload)
        try:
            profile = plist.loads_dict(content)
        except MDMError as e:
            raise CommandFailed(MALFORMED, PROFILE_DOMAIN, f"The profile is malformed: {e.message}") from None
        encrypted = "EncryptedPayloadContent" in profile
        if encrypted:
            try:
                profile = decrypt_profile(profile, self.key, self.cert)
            except (MDMError, TypeError, ValueError) as e:
                raise CommandFailed(CANNOT_DECRYPT, PROFILE_DOMAIN,
                                    f"The profile could not be decrypted: {e}") from None
        try:
            inventory.validate_profile(profile)
        except inventory.ProfileInvalid as e:
            raise CommandFailed(e.code, PROFILE_DOMAIN, str(e)) from None
        return profile, signed, encrypted


# -- command handlers: (device, CommandUUID, Command dict) -> result keys -----------------
@_handles("InstallProfile")
def _install_profile(d: VirtualIPad, cu: str, cmd: dict) -> dict:
    payload = cmd.get("Payload")
    if not isinstance(payload, bytes) or not payload:
        raise _format_error("InstallProfile needs Payload data.")
    profile, signed, encrypted = d._read_profile(payload)
    ident = profile["PayloadIdentifier"]
    if d.enrollment_profile and ident == d.enrollment_profile.get("PayloadIdentifier"):
        raise CommandFailed(INSTALL_FAILED, PROFILE_DOMAIN, "The profile would replace the MDM enrollment profile.")
    d.profiles[ident] = profile
    d.profile_meta[ident] = {"command_uuid": cu, "signed": signed, "encrypted": encrypted,
                             "installs": d.profile_meta.get(ident, {}).get("installs", 0) + 1}
    d._installed_by[cu] = profile["PayloadUUID"]
    return {}


@_handles("RemoveProfile")
def _remove_profile(d: VirtualIPad, cu: str, cmd: dict) -> dict:
    ident = cmd.get("Identifier")
    if not isinstance(ident, str) or not ident:
        raise _format_error("RemoveProfile needs an Identifier.")
    if ident not in d.profiles:
        raise CommandFailed(NOT_INSTALLED, MDM_DOMAIN, f"The profile “{ident}” is not installed.")
    del d.profiles[ident]
    d.profile_meta.pop(ident, None)
    return {}


@_handles("ProfileList")
def _profile_list(d: VirtualIPad, cu: str, cmd: dict) -> dict:
    items = [] if cmd.get("ManagedOnly") or not d.enrollment_profile else [
        inventory.profile_list_entry(d.enrollment_profile, managed=False)]
    items += [inventory.profile_list_entry(p, managed=True, encrypted=d.profile_meta.get(i, {}).get("encrypted", False))
              for i, p in d.profiles.items()]
    return {"ProfileList": items}


@_handles("DeviceInformation")
def _device_information(d: VirtualIPad, cu: str, cmd: dict) -> dict:
    info = inventory.device_information(d.hw, d.state)
    queries = cmd.get("Queries")
    if queries is not None and not isinstance(queries, list):
        raise _format_error("Queries must be an array.")
    return {"QueryResponses": {q: info[q] for q in (queries or info) if isinstance(q, str) and q in info}}


@_handles("SecurityInfo")
def _security_info(d: VirtualIPad, cu: str, cmd: dict) -> dict:
    return {"SecurityInfo": inventory.security_info(d.state)}


def _wanted(cmd: dict) -> set[str] | None:
    ids = cmd.get("Identifiers")
    return set(ids) if isinstance(ids, list) and ids else None


@_handles("InstalledApplicationList")
def _installed_apps(d: VirtualIPad, cu: str, cmd: dict) -> dict:
    wanted, managed_only = _wanted(cmd), bool(cmd.get("ManagedAppsOnly"))
    return {"InstalledApplicationList": [
        dict(a) for i, a in d.state["apps"].items()
        if (wanted is None or i in wanted) and (not managed_only or i in d.managed_apps)]}


@_handles("ManagedApplicationList")
def _managed_apps(d: VirtualIPad, cu: str, cmd: dict) -> dict:
    wanted = _wanted(cmd)
    return {"ManagedApplicationList": {i: dict(m) for i, m in d.managed_apps.items() if wanted is None or i in wanted}}


@_handles("InstallApplication")
def _install_application(d: VirtualIPad, cu: str, cmd: dict) -> dict:
    store_id, ident, manifest = cmd.get("iTunesStoreID"), cmd.get("Identifier"), cmd.get("ManifestURL")
    if store_id is not None and (not isinstance(store_id, int) or isinstance(store_id, bool)):
        raise _format_error("iTunesStoreID must be an integer.")
    if store_id is None and isinstance(ident, str) and ident:
        store_id = next((sid for sid, c in CATALOG.items() if c[0] == ident), None)
    elif store_id is None and isinstance(manifest, str) and manifest:
        ident = "com.enterprise.app" + hashlib.sha256(manifest.encode()).hexdigest()[:8]
    elif store_id is None:
        raise _format_error("InstallApplication needs iTunesStoreID, Identifier or ManifestURL.")
    entry = inventory.app_entry(store_id, ident if isinstance(ident, str) else None)
    ident = entry["Identifier"]
    entry["Installing"] = True
    d.state["apps"][ident] = entry
    d.managed_apps[ident] = {
        "Status": "Installing", "ManagementFlags": int(cmd.get("ManagementFlags", 0) or 0),
        "HasConfiguration": "Configuration" in cmd, "HasFeedback": False, "IsValidated": True,
        "ExternalVersionIdentifier": entry["ExternalVersionIdentifier"],
    }
    return {"Identifier": ident, "State": "Installing"}


@_handles("RemoveApplication")
def _remove_application(d: VirtualIPad, cu: str, cmd: dict) -> dict:
    ident = cmd.get("Identifier")
    if not isinstance(ident, str) or not ident:
        raise _format_error("RemoveApplication needs an Identifier.")
    if ident not in d.managed_apps:
        raise CommandFailed(NOT_MANAGED, MDM_DOMAIN, f"The app “{ident}” is not managed.")
    del d.managed_apps[ident]
    d.state["apps"].pop(ident, None)
    return {}


@_handles("Settings")
def _settings(d: VirtualIPad, cu: str, cmd: dict) -> dict:
    items = cmd.get("Settings")
    if not isinstance(items, list):
        raise _format_error("Settings must be an array.")
    results, failed = [], False
    for s in items:
        item = s.get("Item") if isinstance(s, dict) else None
        if item in ("DeviceName", "TimeZone") and isinstance(s.get(item), str) and d.state["supervised"]:
            d.state["device_name" if item == "DeviceName" else "time_zone"] = s[item]
        elif item in SIMPLE_SETTINGS:
            value = s.get("Enabled") if "Enabled" in s else {k: v for k, v in s.items() if k != "Item"}
            d.state["settings"][item] = value
        else:
            failed = True
            results.append({"Item": str(item), "Status": "Error", "ErrorChain": error_chain(
                UNKNOWN_COMMAND, MDM_DOMAIN, f"The setting “{item}” cannot be applied.")})
            continue
        results.append({"Item": item, "Status": "Acknowledged"})
    if failed:
        raise CommandFailed(UNKNOWN_COMMAND, MDM_DOMAIN, "Some settings could not be applied.",
                            result={"Settings": results})
    return {"Settings": results}


@_handles("DeviceConfigured")
def _device_configured(d: VirtualIPad, cu: str, cmd: dict) -> dict:
    d.state["awaiting_configuration"] = False
    return {}


@_handles("DeviceLock", "RestartDevice", "ShutDownDevice")
def _action(d: VirtualIPad, cu: str, cmd: dict) -> dict:
    d.actions[cmd["RequestType"]] += 1
    return {}


@_handles("EraseDevice")
def _erase(d: VirtualIPad, cu: str, cmd: dict) -> dict:
    """Acknowledged, then the iPad wipes itself: it leaves MDM without a CheckOut."""
    d.actions["EraseDevice"] += 1
    d.erased, d.enrolled = True, False
    d.profiles.clear()
    d.profile_meta.clear()
    d.managed_apps.clear()
    d.state["apps"] = {e["Identifier"]: e for e in map(inventory.app_entry, PREINSTALLED)}
    return {}


@_handles("ClearPasscode")
def _clear_passcode(d: VirtualIPad, cu: str, cmd: dict) -> dict:
    if cmd.get("UnlockToken") != d.unlock_token:
        raise CommandFailed(INSTALL_FAILED, MDM_DOMAIN, "The unlock token is not valid.")
    d.actions["ClearPasscode"] += 1
    d.state["passcode_present"] = False
    return {}


@_handles("CertificateList")
def _certificate_list(d: VirtualIPad, cu: str, cmd: dict) -> dict:
    certs = [c for c in (d.ca_cert, d.cert) if c is not None] + inventory.profile_certificates(d.profiles)
    return {"CertificateList": [inventory.certificate_entry(c, identity=c is d.cert) for c in certs]}


@_handles("Restrictions")
def _restrictions(d: VirtualIPad, cu: str, cmd: dict) -> dict:
    return inventory.restrictions(d.profiles)


@_handles("ProvisioningProfileList")
def _provisioning_profiles(d: VirtualIPad, cu: str, cmd: dict) -> dict:
    return {"ProvisioningProfileList": []}


@_handles("EnableLostMode")
def _enable_lost_mode(d: VirtualIPad, cu: str, cmd: dict) -> dict:
    if not d.state["supervised"]:
        raise CommandFailed(NOT_SUPERVISED, MDM_DOMAIN, "Lost Mode needs a supervised device.")
    if not (cmd.get("Message") or cmd.get("PhoneNumber")):
        raise _format_error("EnableLostMode needs a Message or a PhoneNumber.")
    d.state["lost_mode"] = True
    return {}


def _require_lost(d: VirtualIPad) -> None:
    if not d.state["lost_mode"]:
        raise CommandFailed(NOT_LOST, MDM_DOMAIN, "The device is not in Lost Mode.")


@_handles("DisableLostMode")
def _disable_lost_mode(d: VirtualIPad, cu: str, cmd: dict) -> dict:
    _require_lost(d)
    d.state["lost_mode"] = False
    return {}


@_handles("PlayLostModeSound")
def _play_sound(d: VirtualIPad, cu: str, cmd: dict) -> dict:
    _require_lost(d)
    d.actions["PlayLostModeSound"] += 1
    return {}


@_handles("DeviceLocation")
def _device_location(d: VirtualIPad, cu: str, cmd: dict) -> dict:
    _require_lost(d)
    return inventory.device_location(d.udid, d.clock())
