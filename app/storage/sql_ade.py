"""SQL store for Apple School Manager: the server token, devices, serial rules, profiles.

A page of devices and the cursor that follows it are written in one transaction, so a
failure anywhere leaves the stored cursor pointing at the last page that was kept.
"""

from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.exc import OperationalError, ProgrammingError

from app.db.models import Base, School
from app.db.models_ade import ADEConfig, ADEDevice, ADEProfile, ADESchoolRule, DeviceSetup
from app.storage.sql_base import SQLStore
from mdm.ade.token import ServerToken
from mdm.errors import NotFound, ValidationFailed

APPLE_FIELDS = {"model": "model", "description": "description", "color": "color", "device_family": "device_family",
                "os": "os", "asset_tag": "asset_tag", "profile_status": "profile_status",
                "profile_uuid": "profile_uuid", "device_assigned_by": "device_assigned_by",
                "device_assigned_date": "device_assigned_date", "op_type": "op_type", "op_date": "op_date"}
LIMITS = {"model": 128, "description": 255, "color": 64, "device_family": 32, "os": 32, "asset_tag": 128,
          "profile_status": 16, "profile_uuid": 64, "device_assigned_by": 255, "device_assigned_date": 32,
          "op_type": 16, "op_date": 32}
ROLES = ("pupil", "teacher")


def _iso(t):
    return t.isoformat() if t else None


class SQLADEStore(SQLStore):
    # -- the server token ----------------------------------------------------------------------
    def save_token(self, token: ServerToken, account: dict, now: dt.datetime, actor: str) -> None:
        """Store a new token; the device list is fetched again from scratch with it."""
        vals = dict(consumer_key=token.consumer_key, consumer_secret=token.consumer_secret,
                    access_token=token.access_token, access_secret=token.access_secret,
                    access_token_expiry=token.access_token_expiry, server_name=account.get("server_name"),
                    server_uuid=account.get("server_uuid"), org_name=account.get("org_name"), uploaded_by=actor,
                    uploaded_at=now, cursor=None, cursor_phase=None, last_error=None, last_error_at=None)
        with self.tx() as s:
            row = s.get(ADEConfig, 1, with_for_update=True)
            if row is None:
                s.add(ADEConfig(id=1, **vals))
            else:
                for k, v in vals.items():
                    setattr(row, k, v)

    def token(self) -> ServerToken | None:
        with self.tx() as s:
            r = s.get(ADEConfig, 1)
            if r is None:
                return None
            exp = r.access_token_expiry
            return ServerToken(r.consumer_key, r.consumer_secret, r.access_token, r.access_secret,
                               exp if exp is None or exp.tzinfo else exp.replace(tzinfo=dt.timezone.utc))

    def config(self) -> dict | None:
        """What is known about the token and the sync, without any secret."""
        with self.tx() as s:
            r = s.get(ADEConfig, 1)
            if r is None:
                return None
            return {"server_name": r.server_name, "server_uuid": r.server_uuid, "org_name": r.org_name,
                    "access_token_expiry": _iso(r.access_token_expiry), "uploaded_by": r.uploaded_by,
                    "uploaded_at": _iso(r.uploaded_at), "cursor_phase": r.cursor_phase,
                    "fetched_at": _iso(r.fetched_at), "synced_at": _iso(r.synced_at), "last_error": r.last_error,
                    "last_error_at": _iso(r.last_error_at)}

    def cursor(self) -> tuple[str | None, str | None]:
        """(phase, cursor): (None, None) before the first fetch, ("fetch", c) mid-fetch, ("sync", c) after."""
        with self.tx() as s:
            r = s.get(ADEConfig, 1)
            return (r.cursor_phase, r.cursor) if r else (None, None)

    def reset_cursor(self) -> None:
        with self.tx() as s:
            s.execute(update(ADEConfig).where(ADEConfig.id == 1).values(cursor=None, cursor_phase=None))

    def record_run(self, now: dt.datetime, error: str | None) -> None:
        vals = {"last_error": error[:2000], "last_error_at": now} if error else {"synced_at": now, "last_error": None}
        with self.tx() as s:
            s.execute(update(ADEConfig).where(ADEConfig.id == 1).values(**vals))

    # -- devices -------------------------------------------------------------------------------
    def save_page(self, devices: list[dict], cursor: str | None, phase: str, now: dt.datetime, *,
                  fetch_complete: bool = False) -> dict:
        """Upsert a page of Apple's device records and move the cursor, atomically."""
        docs = {str(d["serial_number"]): d for d in devices if isinstance(d.get("serial_number"), str)}
        counts = {"added": 0, "modified": 0, "deleted": 0}
        with self.tx() as s:
            have = {d.serial: d for d in s.execute(select(ADEDevice).where(ADEDevice.serial.in_(list(docs))))
                    .scalars()} if docs else {}
            for serial, doc in docs.items():
                row = have.get(serial)
                if row is None:
                    row = ADEDevice(serial=serial, role="pupil", created_at=now)
                    s.add(row)
                for key, col in APPLE_FIELDS.items():
                    if key in doc:
                        v = doc[key]
                        setattr(row, col, str(v)[:LIMITS[key]] if v is not None else None)
                op = doc.get("op_type") or ("added" if serial not in have else "modified")
                counts[op if op in counts else "modified"] += 1
                if op == "deleted":
                    row.removed_at = row.removed_at or now
                elif row.removed_at is not None:  # back on this MDM server: assign afresh
                    row.removed_at, row.assigned_profile_uuid, row.assign_status = None, None, None
                row.updated_at = now
            vals: dict = {"cursor": cursor, "cursor_phase": phase}
            if fetch_complete:
                vals["fetched_at"] = now
            s.execute(update(ADEConfig).where(ADEConfig.id == 1).values(**vals))
        return counts

    # -- serial -> school rules ------------------------------------------------------------------
    def add_rules(self, school_id: str, *, serials=(), prefixes=(), role: str = "pupil", actor: str,
                  now: dt.datetime) -> int:
        if role not in ROLES:
            raise ValidationFailed(f"role must be one of {', '.join(ROLES)}")
        pats = [("serial", p.strip().upper()) for p in serials] + [("prefix", p.strip().upper()) for p in prefixes]
        if not pats or any(not p or not p.isalnum() or len(p) > 64 for _, p in pats):
            raise ValidationFailed("serials and prefixes must be alphanumeric (at most 64 characters)")
        with self.tx() as s:
            if s.get(School, school_id) is None:
                raise NotFound(f"unknown school {school_id!r}")
            for kind, p in pats:
                s.execute(delete(ADESchoolRule).where(ADESchoolRule.kind == kind, ADESchoolRule.pattern == p))
            s.add_all([ADESchoolRule(kind=k, pattern=p, school_id=school_id, role=role, created_by=actor,
                                     created_at=now) for k, p in dict.fromkeys(pats)])
        return len(set(pats))

    def remove_rules(self, *, serials=(), prefixes=()) -> int:
        pats = [("serial", p.upper()) for p in serials] + [("prefix", p.upper()) for p in prefixes]
        with self.tx() as s:
            return sum(s.execute(delete(ADESchoolRule).where(ADESchoolRule.kind == k, ADESchoolRule.pattern == p))
                       .rowcount or 0 for k, p in pats)

    def rules(self) -> list[dict]:
        with self.tx() as s:
            return [{"kind": r.kind, "pattern": r.pattern, "school_id": r.school_id, "role": r.role,
                     "created_by": r.created_by, "created_at": _iso(r.created_at)}
                    for r in s.execute(select(ADESchoolRule).order_by(ADESchoolRule.school_id, ADESchoolRule.kind,
                                                                       ADESchoolRule.pattern)).scalars()]

    def _waves(self) -> dict[str, str]:
        """serial -> school from the rollout's delivery waves, when that table exists."""
        table = Base.metadata.tables.get("wave_devices")
        if table is None or "serial" not in table.c or "school_id" not in table.c:
            return {}
        try:
            with self.tx() as s:
                return {r[0].upper(): r[1] for r in s.execute(select(table.c.serial, table.c.school_id))}
        except (OperationalError, ProgrammingError):
            return {}

    def apply_rules(self, now: dt.datetime) -> dict:
        """(Re)compute every current device's school and role: exact serial rule, delivery wave,
        then the longest prefix rule; devices no rule matches keep no school."""
        waves = self._waves()
        with self.tx() as s:
            exact, prefixes = {}, []
            for r in s.execute(select(ADESchoolRule)).scalars():
                if r.kind == "serial":
                    exact[r.pattern] = (r.school_id, r.role)
                else:
                    prefixes.append((r.pattern, r.school_id, r.role))
            prefixes.sort(key=lambda p: -len(p[0]))
            changes, unmapped = [], 0
            for serial, school, role in s.execute(select(ADEDevice.serial, ADEDevice.school_id, ADEDevice.role)
                                                  .where(ADEDevice.removed_at.is_(None))):
                key = serial.upper()
                want = exact.get(key) or ((waves[key], role) if key in waves else None) or next(
                    ((sc, ro) for p, sc, ro in prefixes if key.startswith(p)), None)
                if want is None:
                    unmapped += school is None
                    continue
                if (school, role) != want:
                    changes.append({"serial": serial, "school_id": want[0], "role": want[1], "updated_at": now})
            if changes:
                s.execute(update(ADEDevice), changes)
        return {"changed": len(changes), "unmapped": unmapped}

    # -- profiles and assignments ----------------------------------------------------------------
    def schools_with_devices(self) -> list[str]:
        with self.tx() as s:
            return list(s.execute(select(ADEDevice.school_id).where(ADEDevice.school_id.is_not(None),
                                                                    ADEDevice.removed_at.is_(None))
                                  .distinct().order_by(ADEDevice.school_id)).scalars())

    def profile(self, school_id: str) -> dict | None:
        with self.tx() as s:
            p = s.get(ADEProfile, school_id)
            return None if p is None else {"school_id": p.school_id, "profile_uuid": p.profile_uuid,
                                           "content_hash": p.content_hash, "defined_at": _iso(p.defined_at),
                                           "definition": json.loads(p.definition)}

    def save_profile(self, school_id: str, profile_uuid: str, content_hash: str, definition: dict,
                     now: dt.datetime) -> None:
        with self.tx() as s:
            s.execute(delete(ADEProfile).where(ADEProfile.school_id == school_id))
            s.add(ADEProfile(school_id=school_id, profile_uuid=profile_uuid, content_hash=content_hash,
                             definition=json.dumps(definition, sort_keys=True), defined_at=now))

    def forget_profile(self, profile_uuid: str) -> None:
        with self.tx() as s:
            s.execute(delete(ADEProfile).where(ADEProfile.profile_uuid == profile_uuid))

    def pending_assignments(self) -> dict[str, list[str]]:
        """{profile_uuid: serials} whose school's profile is not yet the one Apple has for them
        (NOT_ACCESSIBLE answers are not retried until Apple reports the device again)."""
        given_up = and_(func.coalesce(ADEDevice.assigned_profile_uuid, "") == ADEProfile.profile_uuid,
                        func.coalesce(ADEDevice.assign_status, "") == "NOT_ACCESSIBLE")  # NULL-safe
        q = (select(ADEProfile.profile_uuid, ADEDevice.serial)
             .join(ADEProfile, ADEProfile.school_id == ADEDevice.school_id)
             .where(ADEDevice.removed_at.is_(None),
                    or_(ADEDevice.profile_uuid.is_(None), ADEDevice.profile_uuid != ADEProfile.profile_uuid),
                    ~given_up)
             .order_by(ADEDevice.serial))
        out: dict[str, list[str]] = {}
        with self.tx() as s:
            for uuid, serial in s.execute(q):
                out.setdefault(uuid, []).append(serial)
        return out

    def record_assignments(self, profile_uuid: str, results: dict[str, str], now: dt.datetime) -> None:
        rows = [{"serial": serial, "assigned_profile_uuid": profile_uuid, "assign_status": status[:32],
                 "assigned_at": now, "updated_at": now} for serial, status in results.items()]
        ok = [r["serial"] for r in rows if r["assign_status"] == "SUCCESS"]
        with self.tx() as s:
            if rows:
                s.execute(update(ADEDevice), rows)
            for k in range(0, len(ok), 1000):
                s.execute(update(ADEDevice).where(ADEDevice.serial.in_(ok[k:k + 1000]))
                          .values(profile_uuid=profile_uuid, profile_status="assigned"))

    # -- enrollment --------------------------------------------------------------------------------
    def enrollment_refusal(self, serial: str, school_id: str) -> str | None:
        """Why ``serial`` may not enroll through ``school_id``'s ADE URL; None when it may."""
        with self.tx() as s:
            d = s.get(ADEDevice, serial)
            if d is None:
                return f"serial {serial} is not assigned to this MDM server in Apple School Manager"
            if d.removed_at is not None:
                return f"serial {serial} was removed from this MDM server in Apple School Manager"
            if d.school_id is None:
                return f"serial {serial} is not assigned to a school yet (schoolmdm ade map)"
            if d.school_id != school_id:
                return f"serial {serial} belongs to school {d.school_id}, not {school_id}"
        return None

    def mark_enrolled(self, serial: str, udid: str, now: dt.datetime) -> None:
        with self.tx() as s:
            s.execute(update(ADEDevice).where(ADEDevice.serial == serial)
                      .values(enrolled_udid=udid, enrolled_at=now, updated_at=now))

    def role_for_serial(self, serial: str | None) -> str | None:
        if not serial:
            return None
        with self.tx() as s:
            return s.execute(select(ADEDevice.role).where(ADEDevice.serial == serial,
                                                          ADEDevice.school_id.is_not(None))).scalar()

    def status(self) -> dict:
        with self.tx() as s:
            def grouped(col, *cond):
                return {str(k): n for k, n in s.execute(select(col, func.count()).where(*cond).group_by(col))}
            current = ADEDevice.removed_at.is_(None)
            return {"devices": s.execute(select(func.count()).select_from(ADEDevice).where(current)).scalar_one(),
                    "removed": s.execute(select(func.count()).select_from(ADEDevice)
                                         .where(ADEDevice.removed_at.is_not(None))).scalar_one(),
                    "by_school": grouped(ADEDevice.school_id, current),
                    "profile_status": grouped(ADEDevice.profile_status, current),
                    "assign_status": grouped(ADEDevice.assign_status, current),
                    "enrolled": s.execute(select(func.count()).select_from(ADEDevice)
                                          .where(current, ADEDevice.enrolled_udid.is_not(None))).scalar_one(),
                    "setup": grouped(DeviceSetup.state),
                    "profiles": {p.school_id: p.profile_uuid for p in s.execute(select(ADEProfile)).scalars()},
                    "rules": s.execute(select(func.count()).select_from(ADESchoolRule)).scalar_one()}
