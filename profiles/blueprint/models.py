"""The blueprint document: city-wide settings plus one school's overrides, after merging.

See ``profiles/blueprint/README.md`` for the YAML layout; ``sections.py`` holds
the per-concern models.
"""

from __future__ import annotations

import difflib
import string
import zoneinfo
from functools import cache
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from profiles.blueprint.classroom import Classroom
from profiles.blueprint.sections import (
    BUNDLE_ID, ROLES, ByRole, Exam, HomeScreen, Notification, Passcode, Restrictions, Role, Strict,
    WebFilter, WifiNetwork, plist_value,
)

#: placeholders a device name pattern may use
DEVICE_NAME_FIELDS: tuple[str, ...] = ("school", "school_name", "serial", "role", "user")


@cache
def _timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


class School(Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=40)
    name: str = Field(min_length=1)
    kind: str | None = None  # e.g. Grundschule, Gymnasium, Gesamtschule


class Settings(Strict):
    language: str = Field("de", pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]+)*$")
    region: str = Field("DE", pattern=r"^[A-Z]{2}$")
    timezone: str | None = None  # IANA name, e.g. Europe/Berlin
    device_name: str | None = None  # e.g. "{school}-{serial}"
    supervised: bool = True  # ADE-enrolled iPads are supervised
    min_ios: str = Field("17.0", pattern=r"^\d+(\.\d+){0,2}$")  # oldest iOS in the fleet

    @field_validator("min_ios", mode="before")
    @classmethod
    def _version_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str | None) -> str | None:
        zones = _timezones()
        if v is not None and zones and v not in zones:
            near = difflib.get_close_matches(v, sorted(zones), n=1)
            raise PydanticCustomError("unknown_timezone", "unknown time zone '{tz}'",
                                      {"tz": v, "suggestion": near[0] if near else None})
        return v

    @field_validator("device_name")
    @classmethod
    def _pattern(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(v) if f is not None]
        except ValueError as e:
            raise ValueError(f"bad device name pattern: {e}") from None
        for f in fields:
            if f not in DEVICE_NAME_FIELDS:
                near = difflib.get_close_matches(f, DEVICE_NAME_FIELDS, n=1)
                raise PydanticCustomError(
                    "unknown_placeholder", "unknown placeholder {name}; use {allowed}",
                    {"name": "{%s}" % f, "allowed": ", ".join("{%s}" % x for x in DEVICE_NAME_FIELDS),
                     "suggestion": "{%s}" % near[0] if near else None})
        return v


class App(Strict):
    name: str
    itunes_id: int | None = Field(None, ge=1)
    bundle_id: str | None = Field(None, pattern=BUNDLE_ID)
    manifest_url: str | None = Field(None, pattern=r"^https://")
    roles: list[Role] = ["pupil", "teacher"]
    state: Literal["present", "absent"] = "present"
    config: dict[str, Any] | None = None  # managed app configuration
    remove_on_unenroll: bool = True
    prevent_backup: bool = False
    removable: bool | None = None  # iOS 14+: may the user delete it?
    vpp: bool = True  # Apps and Books licence assigned to the device
    take_management: bool = True  # take over the app if the user installed it already

    @field_validator("config")
    @classmethod
    def _plist(cls, v: dict | None) -> dict | None:
        return plist_value(v, "config") if v is not None else v

    @model_validator(mode="after")
    def _consistent(self) -> App:
        if self.state == "absent":
            if not self.bundle_id:
                raise ValueError("removing an app needs its bundle_id")
        elif not (self.itunes_id or self.bundle_id or self.manifest_url):
            raise ValueError("give itunes_id, bundle_id or manifest_url")
        return self

    @property
    def key(self) -> str:
        return self.bundle_id or str(self.itunes_id or self.manifest_url)


def _role_default(model: type) -> Any:
    return Field(default_factory=ByRole[model])


class Blueprint(Strict):
    """A whole blueprint. ``base.yaml`` alone has no ``school``; a merged school blueprint does."""

    city: str = Field(min_length=1)
    organisation: str = Field(min_length=1)
    identifier_prefix: str = Field("org.schoolmdm", pattern=r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
    school: School | None = None
    settings: Settings = Field(default_factory=Settings)
    wifi: list[WifiNetwork] = []
    restrictions: ByRole[Restrictions] = _role_default(Restrictions)
    web_filter: ByRole[WebFilter] = _role_default(WebFilter)
    home_screen: ByRole[HomeScreen] = _role_default(HomeScreen)
    notifications: ByRole[dict[str, Notification]] = _role_default(dict[str, Notification])
    exam: ByRole[Exam] = _role_default(Exam)
    passcode: ByRole[Passcode] = _role_default(Passcode)
    classroom: Classroom | None = None
    apps: list[App] = []

    @model_validator(mode="after")
    def _unique(self) -> Blueprint:
        ssids = [(n.ssid, r) for n in self.wifi for r in n.roles]
        dup = {s for s in ssids if ssids.count(s) > 1}
        if dup:
            ssid, role = sorted(dup)[0]
            raise ValueError(f"wifi network {ssid!r} is listed twice for role {role}")
        keys = [(a.key, r) for a in self.apps for r in a.roles]
        dup = {k for k in keys if keys.count(k) > 1}
        if dup:
            key, role = sorted(dup)[0]
            raise ValueError(f"app {key!r} is listed twice for role {role}")
        return self

    @property
    def school_id(self) -> str:
        if self.school is None:
            raise ValueError("this blueprint is the city base, not a school")
        return self.school.id

    def apps_for(self, role: str) -> list[App]:
        return [a for a in self.apps if role in a.roles]

    def wifi_for(self, role: str) -> list[WifiNetwork]:
        return [n for n in self.wifi if role in n.roles]


__all__ = ["ROLES", "App", "Blueprint", "ByRole", "Classroom", "Exam", "HomeScreen",
           "Notification", "Passcode", "Restrictions", "Role", "School", "Settings",
           "WebFilter", "WifiNetwork"]
