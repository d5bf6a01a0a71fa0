"""What a virtual iPad does for each MDM command: the handlers and their registry.

A handler takes ``(device, CommandUUID, Command dict)`` and returns the report's result
keys, or raises ``CommandFailed`` for a report with an ErrorChain. ``VirtualIPad.execute``
looks handlers up in ``HANDLERS`` by RequestType.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from simulator import inventory
from simulator.inventory import BAD_TYPE, CATALOG, INSTALL_FAILED, PREINSTALLED

if TYPE_CHECKING:
    from simulator.device import VirtualIPad


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


HANDLERS: dict[str, Callable[[VirtualIPad, str, dict], dict]] = {}


def _handles(*names: str):
    def deco(fn):
        for n in names:
            HANDLERS[n] = fn
        return fn
    return deco


def handled_request_types() -> list[str]:
    return sorted(HANDLERS)


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
