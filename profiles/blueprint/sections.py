"""Blueprint sections: Wi-Fi, restrictions, web filter, home screen, notifications,
exam mode and passcode (Classroom: ``classroom.py``). Friendly names here, Apple's
names in ``profiles.payloads``."""

from __future__ import annotations

import datetime as dt
from typing import Any, Generic, Literal, TypeVar

from cryptography import x509
from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from profiles.blueprint.restrictions import APP_RATINGS, BOOL_KEYS

Role = Literal["pupil", "teacher"]
ROLES: tuple[str, ...] = ("pupil", "teacher")
BUNDLE_ID = r"^[A-Za-z0-9-]+(\.[A-Za-z0-9_-]+)+$"


class Strict(BaseModel):
    """Unknown keys are errors; YAML types are taken as they are (no "yes" -> True guessing)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


T = TypeVar("T")


class ByRole(Strict, Generic[T]):
    """A section given separately for pupils' and teachers' iPads."""

    pupil: T | None = None
    teacher: T | None = None

    def get(self, role: str) -> T | None:
        return getattr(self, role)


def plist_value(value: Any, where: str = "value") -> Any:
    """Raise ValueError unless ``value`` can go into a property list as it is."""
    if isinstance(value, bool | int | float | str | bytes):
        return value
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.date):
        raise ValueError(f"{where}: a bare date cannot go into a plist; quote it or add a time")
    if isinstance(value, list):
        for i, v in enumerate(value):
            plist_value(v, f"{where}[{i}]")
        return value
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"{where}: keys must be text")
            plist_value(v, f"{where}.{k}")
        return value
    raise ValueError(f"{where}: {type(value).__name__} cannot go into a plist (null is not allowed)")


# --- Wi-Fi ----------------------------------------------------------------------------------


class Proxy(Strict):
    mode: Literal["manual", "auto"]
    server: str | None = None
    port: int | None = Field(None, ge=1, le=65535)
    pac_url: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Proxy:
        if self.mode == "manual" and (not self.server or self.port is None):
            raise ValueError("a manual proxy needs server and port")
        if self.mode == "manual" and self.pac_url:
            raise ValueError("pac_url belongs to mode: auto")
        if self.mode == "auto" and (self.server or self.port is not None):
            raise ValueError("mode: auto takes pac_url (or nothing, for WPAD), not server/port")
        return self


class Eap(Strict):
    method: Literal["EAP-TLS", "PEAP"]
    username: str | None = None
    password: str | None = None
    outer_identity: str | None = None
    trusted_server_names: list[str] = []
    ca_certificate: str | None = None  # PEM, one or more certificates (root first or last)

    @field_validator("ca_certificate")
    @classmethod
    def _pem(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                x509.load_pem_x509_certificates(v.encode())
            except (ValueError, x509.InvalidVersion) as e:
                raise ValueError(f"ca_certificate is not PEM certificate data: {e}") from None
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Eap:
        if self.method == "EAP-TLS" and self.password:
            raise ValueError("EAP-TLS authenticates with a certificate; remove password")
        if not self.trusted_server_names and not self.ca_certificate:
            raise ValueError("give trusted_server_names or ca_certificate, or devices will ask "
                             "users to trust the RADIUS server")
        return self

    def certificates(self) -> list[x509.Certificate]:
        return x509.load_pem_x509_certificates(self.ca_certificate.encode()) if self.ca_certificate else []


class WifiNetwork(Strict):
    ssid: str = Field(min_length=1)
    security: Literal["WPA2", "WPA3", "WPA2-Enterprise", "None"] = "WPA2"
    password: str | None = None
    hidden: bool = False
    auto_join: bool = True
    roles: list[Role] = ["pupil", "teacher"]
    proxy: Proxy | None = None
    eap: Eap | None = None

    @field_validator("ssid")
    @classmethod
    def _ssid_len(cls, v: str) -> str:
        if len(v.encode()) > 32:
            raise ValueError("an SSID is at most 32 bytes")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> WifiNetwork:
        if self.security in ("WPA2", "WPA3"):
            if not self.password or not 8 <= len(self.password) <= 63:
                raise ValueError(f"{self.security} needs a password of 8 to 63 characters")
            if self.eap:
                raise ValueError("eap belongs to security: WPA2-Enterprise")
        elif self.security == "WPA2-Enterprise":
            if not self.eap:
                raise ValueError("WPA2-Enterprise needs an eap section")
            if self.password:
                raise ValueError("WPA2-Enterprise takes eap.username/eap.password, not password")
        elif self.password or self.eap:
            raise ValueError("an open network (security: None) takes no password or eap")
        return self


# --- restrictions -------------------------------------------------------------------------

_RestrictionFlags = create_model(  # one optional boolean per friendly key
    "_RestrictionFlags", __base__=Strict, **{name: (bool | None, None) for name in BOOL_KEYS})


class Restrictions(_RestrictionFlags):  # type: ignore[misc, valid-type]
    max_app_rating: Literal["none", "4+", "9+", "12+", "17+", "all"] | None = None
    rating_region: Literal["us", "au", "ca", "de", "fr", "ie", "jp", "nz", "gb"] | None = None
    blocked_apps: list[str] = []
    exam_apps: list[str] = []
    apple: dict[str, Any] = {}  # Apple's own key names; wins over the friendly keys

    @field_validator("apple")
    @classmethod
    def _plist(cls, v: dict) -> dict:
        return plist_value(v, "apple")

    def rating_apps(self) -> int | None:
        return APP_RATINGS[self.max_app_rating] if self.max_app_rating else None


# --- web content filter -------------------------------------------------------------------


def _urls(v: list[str]) -> list[str]:
    for u in v:
        if not u.startswith(("http://", "https://")):
            raise ValueError(f"{u!r} must start with https:// or http://")
    return v


class Bookmark(Strict):
    url: str
    title: str

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _urls([v])[0]


class WebFilter(Strict):
    auto_filter: bool = False  # Apple's adult-content filter
    permitted_urls: list[str] = []  # always reachable despite the automatic filter
    denied_urls: list[str] = []  # never reachable
    bookmarks: list[Bookmark] = []  # allow-list mode: ONLY these sites are reachable

    @field_validator("permitted_urls", "denied_urls")
    @classmethod
    def _check_urls(cls, v: list[str]) -> list[str]:
        return _urls(v)

    @model_validator(mode="after")
    def _consistent(self) -> WebFilter:
        if self.bookmarks and (self.auto_filter or self.permitted_urls or self.denied_urls):
            raise ValueError("bookmarks switch the filter to allow-list mode (only those sites); "
                             "auto_filter, permitted_urls and denied_urls would be ignored - "
                             "set auto_filter: false and drop the URL lists")
        if (self.permitted_urls or self.denied_urls) and not self.auto_filter:
            raise ValueError("permitted_urls and denied_urls work with auto_filter: true")
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.auto_filter or self.bookmarks)


# --- home screen, notifications, exam -----------------------------------------------------


class HomeItem(Strict):
    """An app (``com.apple.Pages`` or ``{app: ...}``) or a folder with pages of apps."""

    app: str | None = Field(None, pattern=BUNDLE_ID)
    folder: str | None = None
    pages: list[list[HomeItem]] = []

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, v: Any) -> Any:
        return {"app": v} if isinstance(v, str) else v

    @model_validator(mode="after")
    def _consistent(self) -> HomeItem:
        if (self.app is None) == (self.folder is None):
            raise ValueError("an item is either an app bundle id or a folder")
        if self.app and self.pages:
            raise ValueError("pages belong to folders")
        if any(item.folder for page in self.pages for item in page):
            raise ValueError("iOS does not allow folders inside folders")
        return self


class HomeScreen(Strict):
    dock: list[HomeItem] = []
    pages: list[list[HomeItem]] = []


class Notification(Strict):
    enabled: bool = True
    alerts: Literal["none", "banner", "persistent"] | None = None
    badges: bool | None = None
    sounds: bool | None = None
    lock_screen: bool | None = None
    notification_center: bool | None = None
    previews: Literal["always", "unlocked", "never"] | None = None
    grouping: Literal["automatic", "by_app", "off"] | None = None
    critical_alerts: bool | None = None


class Exam(Strict):
    """Single-app mode for exams (``com.apple.app.lock``), pushed on demand."""

    bundle_id: str = Field(pattern=BUNDLE_ID)
    disable_auto_lock: bool = False
    user_options: list[Literal["voice_over", "zoom", "invert_colors", "assistive_touch",
                               "voice_control"]] = []


# --- passcode -----------------------------------------------------------------------------


class Passcode(Strict):
    required: bool = True
    min_length: int | None = Field(None, ge=0, le=16)
    alphanumeric: bool | None = None
    allow_simple: bool | None = None
    min_complex_chars: int | None = Field(None, ge=0, le=4)
    max_failed_attempts: int | None = Field(None, ge=2, le=11)  # iOS ERASES the device after these
    auto_lock_minutes: int | None = Field(None, ge=0, le=15)
    max_age_days: int | None = Field(None, ge=0, le=730)
    history: int | None = Field(None, ge=1, le=50)
    grace_minutes: int | None = Field(None, ge=0)
