"""The state behind the mock ADE server: Apple School Manager's devices for one MDM server.

Devices in assignment order, an event log (added / modified / deleted, what ``/devices/sync``
reports), server-side cursors (a fetch cursor walks a snapshot of the device list and, once
exhausted, is good for sync; cursors expire), profiles and their assignments, OAuth
credentials and session tokens, and faults to inject. Thread-safe: the test thread and
the server thread share it.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field

from mdm.ade.token import ServerToken
from simulator.inventory import hardware_for, random_serial

CURSOR_TTL = dt.timedelta(days=7)
COLORS = ("SPACE GRAY", "SILVER", "BLUE", "PINK", "STARLIGHT")
PROFILE_REQUIRED = ("profile_name", "url")
PROFILE_BOOL = ("is_supervised", "allow_pairing", "is_mandatory", "await_device_configured", "is_mdm_removable",
                "is_multi_user", "auto_advance_setup")


def _iso(t: dt.datetime | None) -> str | None:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ") if t else None


@dataclass
class Device:
    serial: str
    model: str
    description: str
    color: str
    assigned_at: dt.datetime
    school: str | None = None  # the mock's own note (who the serial was bought for); never served
    profile_uuid: str | None = None
    profile_status: str = "empty"  # empty | assigned | pushed | removed
    profile_assign_time: dt.datetime | None = None
    profile_push_time: dt.datetime | None = None
    owned: bool = True

    def as_json(self) -> dict:
        return {"serial_number": self.serial, "model": self.model, "description": self.description,
                "color": self.color, "asset_tag": None, "device_family": "iPad", "os": "iOS",
                "profile_status": self.profile_status, "profile_uuid": self.profile_uuid,
                "profile_assign_time": _iso(self.profile_assign_time),
                "profile_push_time": _iso(self.profile_push_time),
                "device_assigned_date": _iso(self.assigned_at), "device_assigned_by": "asm-admin@musterstadt.de"}


@dataclass
class Cursor:
    kind: str  # fetch | sync
    seq: int  # events up to here are known to the holder
    issued: dt.datetime
    snapshot: list[str] | None = None  # fetch: serials in order
    pos: int = 0


@dataclass(frozen=True)
class Fault:
    status: int
    reason: str
    retry_after: int | None = None
    path: str | None = None  # only requests to this path; None = any API path


@dataclass
class ADEState:
    session_ttl: dt.timedelta = dt.timedelta(minutes=5)
    clock: object = field(default=lambda: dt.datetime.now(dt.timezone.utc))
    devices: dict[str, Device] = field(default_factory=dict)
    events: list[tuple[int, str, str, dt.datetime]] = field(default_factory=list)  # (seq, serial, op, date)
    profiles: dict[str, dict] = field(default_factory=dict)
    credentials: dict[str, ServerToken] = field(default_factory=dict)  # by consumer_key
    sessions: dict[str, dt.datetime] = field(default_factory=dict)
    cursors: dict[str, Cursor] = field(default_factory=dict)
    nonces: set[str] = field(default_factory=set)
    faults: deque[Fault] = field(default_factory=deque)
    counts: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.lock = threading.RLock()

    def now(self) -> dt.datetime:
        return self.clock()

    # -- inventory ------------------------------------------------------------------------
    def _event(self, serial: str, op: str) -> None:
        self.events.append((len(self.events) + 1, serial, op, self.now()))

    def add_device(self, serial: str, school: str | None = None) -> Device:
        with self.lock:
            hw = hardware_for(serial)
            color = COLORS[int(hw.udid[-2:], 16) % len(COLORS)]
            d = Device(serial, hw.marketing_name, f"{hw.marketing_name.upper()} {hw.capacity_gb}GB {color}", color,
                       self.now(), school)
            self.devices[serial] = d
            self._event(serial, "added")
            return d

    def seed(self, n: int, schools: list[str] | tuple[str, ...] = ("school",), prefix: str | None = None) -> dict:
        """``n`` devices split round-robin across ``schools``; {school: [serials]}."""
        out: dict[str, list[str]] = {s: [] for s in schools}
        for i in range(n):
            school = schools[i % len(schools)]
            serial = f"{prefix}{i + 1:05d}" if prefix else random_serial()
            self.add_device(serial, school)
            out[school].append(serial)
        return out

    def disown(self, serial: str) -> None:
        """The device left this MDM server in Apple School Manager (sync reports ``deleted``)."""
        with self.lock:
            self.devices[serial].owned = False
            self._event(serial, "deleted")

    # -- credentials and sessions ---------------------------------------------------------
    def new_token(self, expiry: dt.datetime | None = None) -> ServerToken:
        t = ServerToken("CK_" + secrets.token_hex(20), "CS_" + secrets.token_hex(20), "AT_" + secrets.token_hex(30),
                        "AS_" + secrets.token_hex(20), expiry or self.now() + dt.timedelta(days=365))
        with self.lock:
            self.credentials[t.consumer_key] = t
        return t

    def new_session(self) -> str:
        token = secrets.token_urlsafe(24)
        with self.lock:
            self.sessions[token] = self.now() + self.session_ttl
        return token

    def session_valid(self, token: str | None) -> bool:
        with self.lock:
            exp = self.sessions.get(token or "")
            return exp is not None and exp > self.now()

    def expire_sessions(self) -> None:
        with self.lock:
            self.sessions.clear()

    # -- faults ---------------------------------------------------------------------------
    def inject(self, status: int, n: int = 1, reason: str | None = None, retry_after: int | None = None,
               path: str | None = None) -> None:
        """The next ``n`` API requests (to ``path`` if given) fail with ``status``."""
        reason = reason or {429: "TOO_MANY_REQUESTS", 503: "SERVICE_UNAVAILABLE", 401: "UNAUTHORIZED"}.get(
            status, "INTERNAL_SERVER_ERROR")
        with self.lock:
            self.faults.extend([Fault(status, reason, retry_after, path)] * n)

    def take_fault(self, path: str) -> Fault | None:
        with self.lock:
            for i, f in enumerate(self.faults):
                if f.path is None or f.path == path:
                    del self.faults[i]
                    return f
        return None

    # -- cursors --------------------------------------------------------------------------
    def _cursor(self, c: Cursor) -> str:
        key = secrets.token_urlsafe(18)
        self.cursors[key] = c
        return key

    def cursor(self, key: str | None) -> Cursor | str:
        """The cursor, or Apple's error code for it."""
        c = self.cursors.get(key or "")
        if c is None:
            return "INVALID_CURSOR"
        if self.now() - c.issued > CURSOR_TTL:
            return "EXPIRED_CURSOR"
        return c

    def expire_cursors(self) -> None:
        with self.lock:
            for c in self.cursors.values():
                c.issued -= CURSOR_TTL + dt.timedelta(seconds=1)

    def fetch(self, key: str | None, limit: int) -> dict | str:
        with self.lock:
            if key:
                c = self.cursor(key)
                if isinstance(c, str):
                    return c
                if c.kind != "fetch" or c.snapshot is None or c.pos >= len(c.snapshot):
                    return "EXHAUSTED_CURSOR"
            else:
                c = Cursor("fetch", len(self.events), self.now(),
                           [s for s, d in self.devices.items() if d.owned])
            serials = c.snapshot[c.pos:c.pos + limit]
            pos = c.pos + len(serials)
            nxt = Cursor("fetch", c.seq, self.now(), c.snapshot, pos)
            self.counts["fetched"] += len(serials)
            return {"devices": [self.devices[s].as_json() for s in serials if self.devices[s].owned],
                    "cursor": self._cursor(nxt), "more_to_follow": pos < len(c.snapshot),
                    "fetched_until": _iso(self.now())}

    def sync(self, key: str | None, limit: int) -> dict | str:
        with self.lock:
            if not key:
                return "CURSOR_REQUIRED"
            c = self.cursor(key)
            if isinstance(c, str):
                return c
            batch = self.events[c.seq:c.seq + limit]
            out = []
            for _, serial, op, at in batch:
                doc = self.devices[serial].as_json()
                doc.update(op_type=op, op_date=_iso(at))
                out.append(doc)
            seq = c.seq + len(batch)
            self.counts["synced"] += len(out)
            return {"devices": out, "cursor": self._cursor(Cursor("sync", seq, self.now())),
                    "more_to_follow": seq < len(self.events), "fetched_until": _iso(self.now())}

    # -- profiles -------------------------------------------------------------------------
    def define_profile(self, body: dict) -> dict | str:
        missing = [k for k in PROFILE_REQUIRED if not isinstance(body.get(k), str) or not body[k]]
        if missing:
            return f"MISSING_{missing[0].upper()}"
        if any(k in body and not isinstance(body[k], bool) for k in PROFILE_BOOL):
            return "INVALID_PROFILE"
        if not str(body["url"]).startswith("https://"):
            return "INVALID_URL"
        if not isinstance(body.get("skip_setup_items", []), list):
            return "INVALID_SKIP_SETUP_ITEMS"
        with self.lock:
            profile_uuid = uuid.uuid4().hex.upper()
            self.profiles[profile_uuid] = {k: v for k, v in body.items() if k != "devices"}
            self.counts["profiles_defined"] += 1
        devices = body.get("devices") or []
        return {"profile_uuid": profile_uuid, "devices": self.assign(profile_uuid, devices) if devices else {}}

    def assign(self, profile_uuid: str, serials: list[str]) -> dict[str, str]:
        out = {}
        with self.lock:
            for s in serials:
                d = self.devices.get(s)
                if d is None or not d.owned:
                    out[s] = "NOT_ACCESSIBLE"
                    continue
                d.profile_uuid, d.profile_status, d.profile_assign_time = profile_uuid, "assigned", self.now()
                self._event(s, "modified")
                out[s] = "SUCCESS"
            self.counts["assigned"] += sum(v == "SUCCESS" for v in out.values())
        return out

    def unassign(self, serials: list[str]) -> dict[str, str]:
        out = {}
        with self.lock:
            for s in serials:
                d = self.devices.get(s)
                if d is None or not d.owned:
                    out[s] = "NOT_ACCESSIBLE"
                    continue
                d.profile_uuid, d.profile_status = None, "removed"
                self._event(s, "modified")
                out[s] = "SUCCESS"
        return out

    def cloud_configuration(self, serial: str) -> dict | None:
        """What the device gets in Setup Assistant: its assigned profile, in the device's key names."""
        with self.lock:
            d = self.devices.get(serial)
            if d is None or not d.owned or d.profile_uuid not in self.profiles:
                return None
            p = self.profiles[d.profile_uuid]
            if d.profile_status != "pushed":
                d.profile_status, d.profile_push_time = "pushed", self.now()
                self._event(serial, "modified")
        keys = {"url": "ConfigurationURL", "is_supervised": "IsSupervised", "is_mandatory": "IsMandatory",
                "await_device_configured": "AwaitDeviceConfigured", "is_mdm_removable": "IsMDMUnremovable",
                "skip_setup_items": "SkipSetup", "org_magic": "OrganizationMagic", "department": "Department",
                "support_phone_number": "SupportPhoneNumber", "support_email_address": "SupportEmailAddress",
                "language": "Language", "region": "Region", "anchor_certs": "AnchorCertificates",
                "profile_name": "ProfileName"}
        out = {keys[k]: v for k, v in p.items() if k in keys}
        if "IsMDMUnremovable" in out:  # the device's key says the opposite of the API's
            out["IsMDMUnremovable"] = not p["is_mdm_removable"]
        return out
