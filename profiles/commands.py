"""MDM commands a blueprint implies: app installs/removals and device settings.

Plain dicts ``{"RequestType": ..., ...}`` with Apple's key names; the caller
wraps them (``mdm.commands``) with a CommandUUID.

Language and region are not in this list on purpose: Apple's ``Settings``
command has no language/locale item. They belong in the ADE enrollment
profile (``language`` / ``region``), see ``SchoolBuild.locale``.
"""

from __future__ import annotations

from profiles.blueprint.errors import BlueprintError, Problem
from profiles.blueprint.models import App, Blueprint

REMOVE_ON_UNENROLL = 1  # ManagementFlags bit: remove the app with the MDM profile
PREVENT_BACKUP = 4  # ManagementFlags bit: no backup of app data
VPP_DEVICE_LICENCE = 1  # Options.PurchaseMethod


def install_application(app: App) -> dict:
    cmd: dict = {"RequestType": "InstallApplication"}
    if app.itunes_id is not None:
        cmd["iTunesStoreID"] = app.itunes_id
    elif app.manifest_url is not None:
        cmd["ManifestURL"] = app.manifest_url
    else:
        cmd["Identifier"] = app.bundle_id
    flags = (REMOVE_ON_UNENROLL if app.remove_on_unenroll else 0) | (PREVENT_BACKUP if app.prevent_backup else 0)
    if flags:
        cmd["ManagementFlags"] = flags
    if app.vpp and app.manifest_url is None:
        cmd["Options"] = {"PurchaseMethod": VPP_DEVICE_LICENCE}
    if app.take_management:
        cmd["ChangeManagementState"] = "Managed"
    if app.config:
        cmd["Configuration"] = dict(app.config)
    if app.removable is not None:
        cmd["Attributes"] = {"Removable": app.removable}
    return cmd


def remove_application(bundle_id: str) -> dict:
    return {"RequestType": "RemoveApplication", "Identifier": bundle_id}


def app_commands(bp: Blueprint, role: str) -> list[dict]:
    """InstallApplication for present apps, RemoveApplication for absent ones, in blueprint order."""
    return [install_application(a) if a.state == "present" else remove_application(a.bundle_id)
            for a in bp.apps_for(role)]


def settings_command(items: list[dict]) -> dict:
    return {"RequestType": "Settings", "Settings": items}


def timezone_item(tz: str) -> dict:
    return {"Item": "TimeZone", "TimeZone": tz}


def device_name_item(name: str) -> dict:
    return {"Item": "DeviceName", "DeviceName": name}


def expand_device_name(pattern: str, *, bp: Blueprint, role: str, serial: str, user: str | None = None) -> str:
    """``"{school}-{serial}"`` -> ``"gs-nord-DMPXK2ABCD"``. Placeholders: school, school_name,
    serial, role, user."""
    if "{user}" in pattern and not user:
        raise BlueprintError(Problem(None, None, "settings.device_name",
                                     "the device name pattern uses {user}, but no user was given"))
    school = bp.school
    values = {"school": school.id if school else "", "school_name": school.name if school else "",
              "serial": serial, "role": role, "user": user or ""}
    return pattern.format(**values).strip()


def school_settings_command(bp: Blueprint) -> dict | None:
    """Settings shared by every device of the school (time zone)."""
    items = [timezone_item(bp.settings.timezone)] if bp.settings.timezone else []
    return settings_command(items) if items else None


def device_name_command(bp: Blueprint, role: str, serial: str, *, user: str | None = None) -> dict | None:
    """The per-device Settings command naming the device, or None without a pattern."""
    if not bp.settings.device_name:
        return None
    name = expand_device_name(bp.settings.device_name, bp=bp, role=role, serial=serial, user=user)
    return settings_command([device_name_item(name)])


def school_commands(bp: Blueprint, role: str) -> list[dict]:
    """Everything a school blueprint asks of every device of ``role``."""
    cmds = app_commands(bp, role)
    settings = school_settings_command(bp)
    if settings:
        cmds.append(settings)
    return cmds
