"""Rollout waves: deliveries of iPads (serials) to schools, and the city's progress.

A wave is a delivery: a CSV of ``serial[,school]`` (header optional; the school
column may be left out when the wave names a default school). A serial is
delivered once. Each delivered iPad is, by what the server knows of it:

- ``failed``: it checked out (unenrolled), or enrolled at another school than it
  was delivered to, or it is enrolled, not configured, and a command to it failed;
- ``configured``: enrolled and set up (``devices.configured_at``);
- ``enrolled``: enrolled, set-up still under way;
- ``delivered``: not (yet) enrolled.

Counts per school: ``delivered`` (all), ``enrolled`` (now enrolled, configured
included), ``configured``, ``failed``. A school's ``planned`` number of iPads
and its ``priority`` (1 = first) are stored per school (``set_plan``); without a
plan a school is to get what was delivered. A school is *fully rolled out* when
it has something planned, all of it is delivered and every delivered iPad is
configured. **Next in line**: the schools in the rollout (planned or delivered
> 0) not fully rolled out, by priority (schools without one last), then by the
share still to deliver ``(planned - delivered) / planned``, largest first, then id.
"""

from __future__ import annotations

import csv
import io
import re

from sqlalchemy import exists, func, select
from sqlalchemy.exc import IntegrityError

from app.db.models import Device, QueueItem, School
from app.db.models_roster import RolloutSchool, Wave, WaveDevice
from app.services.clock import Clock, utcnow
from app.storage.sql_base import SQLStore
from mdm.errors import Conflict, Forbidden, NotFound, ValidationFailed

SERIAL = re.compile(r"^[A-Z0-9]{8,20}$")
STATES = ("delivered", "enrolled", "configured", "failed")


def _iso(t):
    return t.isoformat() if t else None


def parse_csv(text: str, default_school: str | None) -> tuple[list[tuple[int, str, str]], list[dict]]:
    """([(row, serial, school)], problems); rows are 1-based lines."""
    first = text.lstrip("\ufeff").split("\n", 1)[0]
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")), delimiter=";" if ";" in first and "," not in first else ",")
    rows, problems = [], []
    for cells in reader:
        row = reader.line_num
        cells = [c.strip() for c in cells]
        if not any(cells) or (row == 1 and cells[0].lower() == "serial"):
            continue
        if len(cells) > 2:
            problems.append({"row": row, "column": None, "message": f"has {len(cells)} fields; use serial[,school]"})
            continue
        serial = cells[0].upper()
        school = (cells[1] if len(cells) > 1 else "") or default_school
        if not SERIAL.match(serial):
            problems.append({"row": row, "column": "serial", "message": f"{cells[0]!r} is not a serial number"})
        if not school:
            problems.append({"row": row, "column": "school", "message": "no school (and the wave names no default)"})
        rows.append((row, serial, school))
    return rows, problems


def _state(d: Device | None, school_id: str, errored: bool) -> tuple[str, str | None]:
    if d is None or d.enrollment_state in ("pending", "authenticated"):
        return "delivered", None
    if d.enrollment_state == "unenrolled":
        return "failed", "checked out (unenrolled)"
    if d.school_id != school_id:
        return "failed", f"enrolled at {d.school_id!r}"
    if d.configured_at is not None:
        return "configured", None
    return ("failed", "a command failed before set-up finished") if errored else ("enrolled", None)


def _counts(states) -> dict:
    c = {k: 0 for k in STATES}
    for st, d in states:
        c["delivered"] += 1
        if d is not None and d.enrollment_state == "enrolled":
            c["enrolled"] += 1
        if st in ("configured", "failed"):
            c[st] += 1
    return c


class WaveService(SQLStore):
    def __init__(self, sessions, audit, *, clock: Clock = utcnow) -> None:
        super().__init__(sessions)
        self.audit = audit
        self.clock = clock

    def _devices(self, s, *cond) -> list[tuple[WaveDevice, Device | None, str, str | None]]:
        errored = exists().where(QueueItem.udid == Device.udid, QueueItem.status.in_(("error", "format_error")))
        q = (select(WaveDevice, Device, errored).outerjoin(Device, Device.serial == WaveDevice.serial)
             .where(*cond).order_by(WaveDevice.school_id, WaveDevice.serial))
        out, seen = [], set()
        for wd, d, err in s.execute(q):
            if wd.serial not in seen:  # one row per serial, even if a serial enrolled under two UDIDs
                seen.add(wd.serial)
                out.append((wd, d, *_state(d, wd.school_id, bool(err))))
        return out

    def create(self, name: str, csv_text: str, *, actor: str, default_school: str | None = None,
               schools: list[str] | None = None) -> dict:
        rows, problems = parse_csv(csv_text, default_school)
        if not rows and not problems:
            problems.append({"row": None, "column": None, "message": "the CSV names no serial"})
        with self.tx() as s:
            known = set(s.execute(select(School.id)).scalars())
            firsts: dict[str, int] = {}
            for row, serial, school in rows:
                if school and school not in known:
                    problems.append({"row": row, "column": "school", "message": f"no school {school!r}"})
                elif school and schools is not None and school not in schools:
                    raise Forbidden(f"this token may not deliver to school {school!r}")
                if serial in firsts:
                    problems.append({"row": row, "column": "serial",
                                     "message": f"{serial} is in row {firsts[serial]} too"})
                firsts.setdefault(serial, row)
            serials = list(firsts)
            for i in range(0, len(serials), 500):
                for serial, wname in s.execute(select(WaveDevice.serial, Wave.name).join(Wave).where(
                        WaveDevice.serial.in_(serials[i:i + 500]))):
                    problems.append({"row": firsts[serial], "column": "serial",
                                     "message": f"{serial} was delivered already in wave {wname!r}"})
            if problems:
                problems.sort(key=lambda p: (p["row"] or 0, p["column"] != "serial"))  # row, then column
                p = problems[0]
                where = f"row {p['row']}" + (f", column {p['column']}" if p["column"] else "") if p["row"] else "csv"
                raise ValidationFailed(f"wave refused, nothing was stored: {where}: {p['message']}"
                                       + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
                                       details={"problems": problems[:500], "count": len(problems)})
            if s.execute(select(Wave.id).where(Wave.name == name)).first():
                raise Conflict(f"there is a wave named {name!r} already")
            wave = Wave(name=name, created_by=actor, created_at=self.clock())
            s.add(wave)
            try:
                s.flush()
                s.add_all(WaveDevice(serial=serial, wave_id=wave.id, school_id=school) for _, serial, school in rows)
                s.flush()
            except IntegrityError:
                raise Conflict("another wave was stored at the same time with the same name or serials") from None
            wave_id = wave.id
        per_school: dict[str, int] = {}
        for _, _, school in rows:
            per_school[school] = per_school.get(school, 0) + 1
        self.audit.record(actor, "wave:create", f"wave:{name}", {"wave": wave_id, "devices": len(rows),
                                                                  "schools": per_school})
        return self.get(wave_id)

    def list(self, schools: list[str] | None = None) -> dict:
        cond = [WaveDevice.school_id.in_(schools)] if schools is not None else []
        with self.tx() as s:
            counts = dict(s.execute(select(WaveDevice.wave_id, func.count()).where(*cond)
                                    .group_by(WaveDevice.wave_id)).all())
            items = [{"id": w.id, "name": w.name, "created_at": _iso(w.created_at), "created_by": w.created_by,
                      "devices": counts.get(w.id, 0)}
                     for w in s.execute(select(Wave).order_by(Wave.id.desc())).scalars()
                     if schools is None or w.id in counts]
        return {"items": items, "total": len(items)}

    def get(self, wave_id: int, *, schools: list[str] | None = None, limit: int = 1000, offset: int = 0) -> dict:
        with self.tx() as s:
            w = s.get(Wave, wave_id)
            if w is None:
                raise NotFound(f"no wave {wave_id}")
            cond = [WaveDevice.wave_id == wave_id]
            if schools is not None:
                cond.append(WaveDevice.school_id.in_(schools))
            devs = self._devices(s, *cond)
        by_school: dict[str, list] = {}
        for wd, d, st, _ in devs:
            by_school.setdefault(wd.school_id, []).append((st, d))
        return {"id": w.id, "name": w.name, "created_at": _iso(w.created_at), "created_by": w.created_by,
                "totals": _counts([(st, d) for _, d, st, _ in devs]),
                "schools": [{"school_id": sid, **_counts(v)} for sid, v in sorted(by_school.items())],
                "devices": [{"serial": wd.serial, "school_id": wd.school_id, "udid": d.udid if d else None,
                             "state": st, "reason": why} for wd, d, st, why in devs[offset:offset + limit]],
                "limit": limit, "offset": offset}

    def set_plan(self, school_id: str, *, actor: str, **changes: int | None) -> dict:
        """Set a school's rollout ``priority`` (1 = first) and/or ``planned`` number of iPads; None clears one."""
        for k, v in changes.items():
            if k not in ("priority", "planned"):
                raise ValidationFailed(f"unknown rollout setting {k!r}")
            if v is not None and v < (1 if k == "priority" else 0):
                raise ValidationFailed(f"{k} must be at least {1 if k == 'priority' else 0}")
        with self.tx() as s:
            if s.get(School, school_id) is None:
                raise NotFound(f"no school {school_id!r}")
            row = s.get(RolloutSchool, school_id) or RolloutSchool(school_id=school_id)
            for k, v in changes.items():
                setattr(row, k, v)
            row.updated_at = self.clock()
            s.add(row)
            doc = {"school_id": school_id, "priority": row.priority, "planned": row.planned}
        self.audit.record(actor, "rollout:plan", f"school:{school_id}", changes)
        return doc

    def rollout(self, schools: list[str] | None = None) -> dict:
        """Progress per school and for the city, and the schools next in line."""
        with self.tx() as s:
            names = dict(s.execute(select(School.id, School.name)).all())
            plans = {r.school_id: r for r in s.execute(select(RolloutSchool)).scalars()}
            devs = self._devices(s)
        by_school: dict[str, list] = {}
        for wd, d, st, _ in devs:
            by_school.setdefault(wd.school_id, []).append((st, d))
        items = []
        for sid in sorted(names):
            if schools is not None and sid not in schools:
                continue
            c, plan = _counts(by_school.get(sid, [])), plans.get(sid)
            planned = plan.planned if plan and plan.planned is not None else c["delivered"]
            to_deliver = max(planned - c["delivered"], 0)
            items.append({"school_id": sid, "name": names[sid], "priority": plan.priority if plan else None,
                          "planned": planned, **c, "to_deliver": to_deliver,
                          "share_to_deliver": round(to_deliver / planned, 4) if planned else 0.0,
                          "progress": round(min(c["configured"] / planned, 1.0), 4) if planned else 0.0,
                          "in_rollout": planned > 0 or c["delivered"] > 0,
                          "done": planned > 0 and to_deliver == 0 and c["configured"] == c["delivered"]})
        total = {k: sum(i[k] for i in items) for k in ("planned", *STATES, "to_deliver")}
        total["progress"] = round(min(total["configured"] / total["planned"], 1.0), 4) if total["planned"] else 0.0
        total["schools"] = sum(i["in_rollout"] for i in items)
        total["schools_done"] = sum(i["done"] for i in items)
        line = sorted((i for i in items if i["in_rollout"] and not i["done"]),
                      key=lambda i: (i["priority"] is None, i["priority"] or 0, -i["share_to_deliver"], i["school_id"]))
        return {"overall": total, "schools": items, "next_in_line": [
            {"school_id": i["school_id"], "name": i["name"], "priority": i["priority"], "to_deliver": i["to_deliver"],
             "share_to_deliver": i["share_to_deliver"], "progress": i["progress"]} for i in line]}
