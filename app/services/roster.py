"""Roster import from Apple School Manager CSV files (the SFTP upload), and the roster's read side.

``import_path`` checks every file first (``roster_files.parse``: errors name file,
row and column) and changes nothing when anything is wrong. Then, in ONE
transaction, it creates the schools new locations need, applies what was added,
changed and removed per kind, and stores new Classroom profile versions for the
schools whose classes changed (built and signed before the transaction). The
same files imported again change nothing.

Locations become schools (``roster_model.map_locations``): a location keeps the
school it was mapped to; else a school whose id equals the location_id is linked;
else a school is created with an id slugged from the location name.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import and_, delete, func, insert, or_, select, tuple_, update

from app.db.models import School
from app.db.models_roster import Loan, RosterMember, RosterPupil
from app.services.clock import Clock, utcnow
from app.services.roster_files import Problem, RosterError, parse, read_upload
from app.services.roster_model import (
    KINDS, as_school_classes, assign_groups, class_name, class_views, diff, full_name, key_of, load, map_locations,
    school_classes, search_text,
)
from app.storage.sql_base import SQLStore
from profiles.blueprint.classroom import SchoolClass

log = logging.getLogger("schoolmdm.roster")
CHUNK = 300
REPORT_NAMES = {"members": "memberships"}
#: order of writes: removed memberships and classes first, then upserts parents first, then the other removals
UPSERT_ORDER = ("locations", "courses", "pupils", "teachers", "classes", "members")
LATE_REMOVALS = ("courses", "pupils", "teachers", "locations")


def like_words(column, q: str):
    """Every word of ``q`` occurs in ``column`` (a casefolded search text); LIKE wildcards are literal."""
    words = search_text(q).split()
    esc = [w.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") for w in words]
    return and_(*(column.like(f"%{w}%", escape="\\") for w in esc)) if esc else column.is_(None)


def pupil_doc(p: RosterPupil) -> dict:
    name = full_name({"first_name": p.first_name, "middle_name": p.middle_name, "last_name": p.last_name})
    return {"person_id": p.person_id, "name": name, "first_name": p.first_name,
            "last_name": p.last_name, "person_number": p.person_number, "sis_username": p.sis_username,
            "grade_level": p.grade_level, "school_id": p.school_id}


class ClassroomRoster(SQLStore):
    """A school's roster classes as Classroom classes: the hook ``BlueprintService`` builds with."""

    def classes_for(self, school_id: str) -> list[SchoolClass]:
        with self.tx() as s:
            docs = load(s, [school_id])
        return school_classes(docs).get(school_id, [])


class RosterService(SQLStore):
    def __init__(self, sessions, blueprints, audit, *, clock: Clock = utcnow) -> None:
        super().__init__(sessions)
        self.blueprints = blueprints
        self.audit = audit
        self.clock = clock

    def import_path(self, path: Path | str, *, actor: str) -> dict:
        """Import a zip of the six CSV files or a folder holding them."""
        return self.import_files(read_upload(path), actor=actor)

    def import_files(self, files: dict[str, bytes], *, actor: str) -> dict:
        roster = parse(files)
        with self.tx() as s:
            old = load(s)
            schools = set(s.execute(select(School.id)).scalars())
        stored_map = {k: d["school_id"] for k, d in old["locations"].items()}
        mapping, created = map_locations(roster.locations, stored_map, schools)
        new = self._documents(roster, mapping)
        problem = assign_groups(new["classes"], old["classes"])
        if problem:
            raise RosterError([Problem("classes.csv", None, "class_id", problem)])
        old_views, new_views = class_views(old), class_views(new)
        affected = sorted(sid for sid in set(old_views) | set(new_views) if old_views.get(sid) != new_views.get(sid))
        pending = self.blueprints.classroom_versions({sid: as_school_classes(new_views.get(sid, []))
                                                      for sid in affected})
        changes = {kind: diff(old[kind], new[kind]) for kind in KINDS}
        now = self.clock()
        with self.tx() as s:
            for sid, name in sorted(created.items()):
                s.add(School(id=sid, name=name, enroll_token_hash="", created_at=now))
            s.flush()
            self._apply(s, changes, now)
            loans = self._refresh_loans(s, changes["pupils"][1], old["pupils"])
            profiles = self.blueprints.add_profiles(s, pending, now)
            warnings = self._warnings(s, changes["pupils"][2], old["pupils"])
        linked = sorted({mapping[lid] for lid in mapping if lid not in stored_map} - set(created))
        warnings += [f"created school {sid!r} ({name}): import a blueprint for it and create its enrollment URL"
                     for sid, name in sorted(created.items())]
        report = {"schools_created": sorted(created), "schools_linked": linked,
                  "classroom_schools": affected, "classroom_profiles": profiles, "loans_updated": loans,
                  "warnings": warnings, **self._counts(changes, new)}
        self.audit.record(actor, "roster:import", "roster",
                          {k: report[k] for k in ("schools_created", "classroom_schools")} |
                          {REPORT_NAMES.get(k, k): report[REPORT_NAMES.get(k, k)]["counts"] for k in KINDS})
        log.info("roster import by %s: %s", actor, {k: report[REPORT_NAMES.get(k, k)]["counts"] for k in KINDS})
        return report

    @staticmethod
    def _documents(roster, mapping: dict[str, str]) -> dict[str, dict]:
        docs = {"locations": {lid: {**d, "school_id": mapping[lid]} for lid, d in roster.locations.items()}}
        for kind in ("pupils", "teachers", "courses", "classes"):
            cols = KINDS[kind][1]
            docs[kind] = {k: {c: d.get(c) for c in cols if c != "school_id"} | {"school_id": mapping[d["location_id"]]}
                          for k, d in getattr(roster, kind).items()}
        docs["members"] = {k: {"class_id": k[0], "role": k[1], "person_id": k[2], **m}
                           for k, m in roster.members.items()}
        return docs

    @staticmethod
    def _row(kind: str, doc: dict, now) -> dict:
        row = dict(doc)
        if kind != "members":
            row["updated_at"] = now
        if kind == "pupils":
            row["search"] = search_text(full_name(doc), doc["person_number"], doc["sis_username"])
        return row

    def _apply(self, s, changes: dict, now) -> None:
        def remove(kind: str) -> None:
            model, cols = KINDS[kind]
            keys = changes[kind][2]
            for i in range(0, len(keys), CHUNK):
                part = keys[i:i + CHUNK]
                if kind == "members":
                    cond = tuple_(RosterMember.class_id, RosterMember.role, RosterMember.person_id).in_(part)
                else:
                    cond = getattr(model, cols[0]).in_(part)
                s.execute(delete(model).where(cond))

        remove("members")
        remove("classes")
        for kind in UPSERT_ORDER:
            model = KINDS[kind][0]
            added, changed, _ = changes[kind]
            if added:
                s.execute(insert(model), [self._row(kind, d, now) for d in added])
            if changed:
                s.execute(update(model), [self._row(kind, d, now) for d in changed])
        for kind in LATE_REMOVALS:
            remove(kind)

    @staticmethod
    def _refresh_loans(s, changed: list[dict], old: dict) -> int:
        """Open loans follow a pupil's new name, number and user name; returns how many did."""
        fields = ("first_name", "middle_name", "last_name", "person_number", "sis_username")
        renamed = {d["person_id"]: d for d in changed if any(old[d["person_id"]][f] != d[f] for f in fields)}
        ids, n = list(renamed), 0
        for i in range(0, len(ids), CHUNK):
            for loan in s.execute(select(Loan).where(Loan.pupil_id.in_(ids[i:i + CHUNK]),
                                                     Loan.returned_at.is_(None))).scalars():
                d = renamed[loan.pupil_id]
                loan.pupil_name, loan.person_number, loan.sis_username = full_name(d), d["person_number"], \
                    d["sis_username"]
                loan.search = search_text(loan.pupil_name, loan.person_number, loan.sis_username)
                n += 1
        return n

    @staticmethod
    def _warnings(s, removed: list[str], old: dict) -> list[str]:
        out = []
        for i in range(0, len(removed), CHUNK):
            for loan in s.execute(select(Loan).where(Loan.pupil_id.in_(removed[i:i + CHUNK]),
                                                     Loan.returned_at.is_(None))).scalars():
                out.append(f"pupil {loan.pupil_id!r} ({full_name(old[loan.pupil_id])}) left the roster with iPad "
                           f"{loan.serial or loan.udid} still on loan (loan {loan.id})")
        return out

    @staticmethod
    def _counts(changes: dict, new: dict) -> dict:
        out = {}
        for kind, (added, changed, removed) in changes.items():
            def ids(items):
                keys = [key_of(kind, d) if isinstance(d, dict) else d for d in items]
                return ["/".join(k) if isinstance(k, tuple) else k for k in sorted(keys)[:100]]
            out[REPORT_NAMES.get(kind, kind)] = {
                "counts": {"added": len(added), "changed": len(changed), "removed": len(removed),
                           "unchanged": len(new[kind]) - len(added) - len(changed)},
                "added": ids(added), "changed": ids(changed), "removed": ids(removed)}
        return out

    # --- read side
    def pupils(self, q: str | None = None, *, school_id: str | None = None, schools: list[str] | None = None,
               limit: int = 50, offset: int = 0) -> dict:
        """Pupils by name, person_number, sis_username (every word must match) or exact person_id."""
        cond = []
        if q:
            cond.append(or_(RosterPupil.person_id == q.strip(), like_words(RosterPupil.search, q)))
        if school_id:
            cond.append(RosterPupil.school_id == school_id)
        if schools is not None:
            cond.append(RosterPupil.school_id.in_(schools))
        with self.tx() as s:
            total = s.execute(select(func.count()).select_from(RosterPupil).where(*cond)).scalar_one()
            rows = s.execute(select(RosterPupil).where(*cond).order_by(RosterPupil.last_name, RosterPupil.first_name,
                                                                       RosterPupil.person_id)
                             .limit(limit).offset(offset)).scalars().all()
            items = [pupil_doc(p) for p in rows]
        return {"items": items, "total": total, "limit": limit, "offset": offset}

    def classes(self, school_id: str) -> list[dict]:
        """A school's roster classes with teachers and pupils, as Classroom will show them."""
        with self.tx() as s:
            docs = load(s, [school_id])
        named = {c["class_id"]: class_name(c, docs["courses"]) for c in docs["classes"].values()}
        by_group = {c["group_id"]: c["class_id"] for c in docs["classes"].values()}
        return [{"class_id": by_group[k.group_id], "name": named[by_group[k.group_id]], "group_id": k.group_id,
                 "teachers": [p.model_dump() for p in k.teachers], "pupils": [p.model_dump() for p in k.pupils]}
                for k in school_classes(docs).get(school_id, [])]
