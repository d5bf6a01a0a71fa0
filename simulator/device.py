"""A virtual iPad: its state, its check-in messages and how it executes MDM commands
(the handlers of each RequestType are in ``simulator.commands``).

Pure (no I/O): ``handle_command(raw) -> report bytes`` is all the network side needs.
Behaviour knobs for tests: ``not_now_once`` (RequestTypes answered NotNow the first
time each command of that type is seen, and again if resent in that same session; the
device asks to be retried and executes it on a later connect) and double-application accounting (``applied`` counts executions
per CommandUUID; re-executing a non-idempotent command, or re-installing the same
profile UUID through the same CommandUUID, increments ``double_applications``).
"""

from __future__ import annotations

import datetime as dt
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
from simulator.commands import HANDLERS, MDM_DOMAIN, PROFILE_DOMAIN, UNKNOWN_COMMAND, CommandFailed
from simulator.inventory import BAD_SIGNATURE, CANNOT_DECRYPT, MALFORMED, PREINSTALLED, TIME_ZONE, Hardware

NON_IDEMPOTENT = frozenset({"DeviceLock", "EraseDevice", "RestartDevice", "ShutDownDevice",
                            "PlayLostModeSound", "ClearPasscode"})


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
        handler = HANDLERS.get(rt)
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
