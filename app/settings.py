"""Settings from the environment (``SCHOOLMDM_*``), via pydantic-settings."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_db_url() -> str:
    # DATABASE_URL (what CI and most platforms set) wins over the SQLite default.
    return os.environ.get("DATABASE_URL") or "sqlite:///./var/schoolmdm.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SCHOOLMDM_", extra="ignore")

    #: where keys, certificates and the SQLite database live
    data_dir: Path = Path("./var")
    database_url: str = Field(default_factory=_default_db_url)
    #: the public base URL devices use (https://mdm.example.org)
    public_url: str = "https://127.0.0.1:8443"
    host: str = "127.0.0.1"
    port: int = 8443
    #: serve HTTPS with the development TLS certificate (off behind a TLS-terminating proxy)
    tls: bool = True
    org_name: str = "Stadt Musterstadt Schulen"

    # Apple Push Notification service
    apns_url: str = "https://api.push.apple.com"
    #: PEM files of a real APNs push certificate/key; empty = development identity in data_dir
    apns_cert_file: Path | None = None
    apns_key_file: Path | None = None
    #: CA bundle to verify the APNs server (for the mock); empty = system CAs
    apns_ca_file: Path | None = None
    push_batch_size: int = 1000
    push_interval_seconds: float = 0.2

    # PKI
    ca_cert_file: Path | None = None
    ca_key_file: Path | None = None
    device_cert_days: int = 365
    #: key of the profile-signing identity created on first start: ec-p256 (fast) or rsa-2048
    profile_signing_key: str = Field("ec-p256", pattern="^(ec-p256|rsa-2048)$")
    #: accept the device certificate from this header set by a TLS-terminating proxy (off by default)
    client_cert_header: str | None = None

    #: encrypt pushed profiles that carry secrets to each device's identity (EncryptedPayloadContent)
    encrypt_profiles_with_secrets: bool = True

    # enrollment
    challenge_ttl_seconds: int = 3600

    #: run background work (pushes, webhooks, schedules) inside ``serve``; false on HTTP-only instances
    background: bool = True

    # scheduled work
    #: re-read DeviceInformation, ProfileList and InstalledApplicationList when older than this
    inventory_max_age_seconds: int = 24 * 3600
    #: how often the scheduler looks for stale inventory (0 = never)
    inventory_interval_seconds: float = 300.0

    #: push again devices with pending commands that did not come back this long after a push (0 = never)
    repush_after_seconds: float = 120.0
    repush_interval_seconds: float = 30.0
    #: delete finished command history older than this (0 = keep forever)
    command_retention_days: int = 180
    webhook_retention_days: int = 30
    retention_interval_seconds: float = 3600.0

    # Apple School Manager: Automated Device Enrollment (ADE)
    #: Apple's device assignment API (the mock ADE server in development)
    ade_url: str = "https://mdmenrollment.apple.com"
    #: CA bundle to verify the ADE server; empty = system CAs
    ade_ca_file: Path | None = None
    #: how often ADE devices are synced, profiles defined and assigned (0 = only on demand)
    ade_sync_interval_seconds: float = 900.0
    #: CA that issued the devices' identities signing MachineInfo (Apple's device CA); empty = signature only
    ade_device_ca_file: Path | None = None
    #: shown in Setup Assistant by the ADE enrollment profile
    ade_support_phone: str | None = None
    ade_support_email: str | None = None

    # limits
    max_checkin_bytes: int = 256 * 1024
    max_connect_bytes: int = 8 * 1024 * 1024
    max_scep_bytes: int = 64 * 1024
    max_plist_depth: int = 32
    max_api_bytes: int = 1024 * 1024
    request_timeout_seconds: float = 30.0
    #: device requests per second per UDID (burst allows a whole command session); 0 = off
    device_rate_per_second: float = 10.0
    device_rate_burst: float = 60.0
    #: API requests per second per token; 0 = off
    token_rate_per_second: float = 50.0
    token_rate_burst: float = 200.0

    # API
    #: a bootstrap admin token (only its hash is stored); empty = none
    admin_token: str | None = None

    log_level: str = "INFO"

    @field_validator("database_url")
    @classmethod
    def _normalize_db(cls, v: str) -> str:
        if v.startswith("postgres://"):
            v = "postgresql://" + v[len("postgres://") :]
        if v.startswith("postgresql://"):
            v = "postgresql+psycopg://" + v[len("postgresql://") :]
        return v

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def server_url(self) -> str:
        return self.public_url.rstrip("/") + "/mdm/connect"

    @property
    def checkin_url(self) -> str:
        return self.public_url.rstrip("/") + "/mdm/checkin"

    @property
    def scep_url(self) -> str:
        return self.public_url.rstrip("/") + "/scep"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
