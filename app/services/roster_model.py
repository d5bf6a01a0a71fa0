"""The roster as plain documents: load it, diff it, map locations to schools, derive Classroom classes.

Shared by the import (``app/services/roster.py``) and the blueprint hook that reads
a school's classes (``ClassroomRoster``). Pure functions on dicts, plus ``load``.
"""

from __future__ import annotations

import re
import unicodedata

from sqlalchemy import select

from app.db.models_roster import AsmLocation, RosterClass, RosterCourse, RosterMember, RosterPupil, RosterTeacher
from profiles.blueprint.classroom import Person, SchoolClass

#: kind -> (model, the columns compared and stored; the key columns first)
KINDS = {
    "locations": (AsmLocation, ("location_id", "name", "school_id")),
    "pupils": (RosterPupil, ("person_id", "person_number", "first_name", "middle_name", "last_name", "grade_level",
                             "email", "sis_username", "password_policy", "location_id", "other_locations",
                             "school_id")),
    "teachers": (RosterTeacher, ("person_id", "person_number", "first_name", "middle_name", "last_name", "email",
                                 "sis_username", "location_id", "other_locations", "school_id")),
    "courses": (RosterCourse, ("course_id", "course_number", "name", "location_id", "school_id")),
    "classes": (RosterClass, ("class_id", "class_number", "display_name", "course_id", "location_id", "school_id",
                              "group_id")),
    "members": (RosterMember, ("class_id", "role", "person_id", "roster_id", "position")),
}
MAX_GROUP_ID = 65535
_TRANSLIT = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "Ä": "ae", "Ö": "oe", "Ü": "ue"})


def key_of(kind: str, doc: dict):
    return (doc["class_id"], doc["role"], doc["person_id"]) if kind == "members" else doc[KINDS[kind][1][0]]


def load(s, school_ids: list[str] | None = None) -> dict[str, dict]:
    """Stored roster documents per kind; with ``school_ids``, only those schools' classes and what they use."""
    out: dict[str, dict] = {}
    classes = select(RosterClass.class_id).where(RosterClass.school_id.in_(school_ids or []))
    people = select(RosterMember.person_id).where(RosterMember.class_id.in_(classes))
    scoped = {"locations": None, "classes": RosterClass.school_id.in_(school_ids or []),
              "members": RosterMember.class_id.in_(classes), "pupils": RosterPupil.person_id.in_(people),
              "teachers": RosterTeacher.person_id.in_(people),
              "courses": RosterCourse.course_id.in_(select(RosterClass.course_id)
                                                    .where(RosterClass.school_id.in_(school_ids or [])))}
    for kind, (model, cols) in KINDS.items():
        q = select(*(getattr(model, c) for c in cols))
        if school_ids is not None and scoped[kind] is not None:
            q = q.where(scoped[kind])
        out[kind] = {}
        for row in s.execute(q):
            doc = dict(zip(cols, row))
            out[kind][key_of(kind, doc)] = doc
    return out


def diff(old: dict, new: dict) -> tuple[list[dict], list[dict], list]:
    """(added docs, changed docs, removed keys)."""
    added = [d for k, d in new.items() if k not in old]
    changed = [d for k, d in new.items() if k in old and old[k] != d]
    removed = [k for k in old if k not in new]
    return added, changed, removed


def school_slug(name: str) -> str:
    """A school id from a location name: German umlauts transliterated, [a-z0-9-], at most 40 characters."""
    text = unicodedata.normalize("NFKD", name.translate(_TRANSLIT))
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    slug = re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:40].rstrip("-")
    return slug or "school"


def map_locations(locations: dict[str, dict], stored: dict[str, str], schools: set[str]) -> tuple[dict, dict]:
    """(location_id -> school id, {new school id: name}).

    A location keeps the school it was mapped to before; else a school with the
    location's id is linked; else a school is created with ``school_slug(name)``,
    suffixed ``-2``, ``-3``, ... while that id is taken.
    """
    mapping: dict[str, str] = {}
    created: dict[str, str] = {}
    taken = set(schools)
    for lid in sorted(locations):
        if stored.get(lid) in schools:
            mapping[lid] = stored[lid]
        elif lid in schools:
            mapping[lid] = lid
        else:
            base = sid = school_slug(locations[lid]["name"])
            n = 2
            while sid in taken:
                sid = f"{base[:40 - len(str(n)) - 1]}-{n}"
                n += 1
            taken.add(sid)
            created[sid] = locations[lid]["name"]
            mapping[lid] = sid
    return mapping, created


def assign_groups(classes: dict[str, dict], stored: dict[str, dict]) -> str | None:
    """Give each class a Classroom group id (BeaconID) stable per school; returns an error or None.

    A class that stays at its school keeps its number; others get the lowest number
    not held by any class stored for that school.
    """
    used: dict[str, set[int]] = {}
    for c in stored.values():
        if c["class_id"] in classes:
            used.setdefault(c["school_id"], set()).add(c["group_id"])
    for cid in sorted(classes):
        c, old = classes[cid], stored.get(cid)
        if old is not None and old["school_id"] == c["school_id"]:
            c["group_id"] = old["group_id"]
            continue
        taken = used.setdefault(c["school_id"], set())
        n = next((i for i in range(1, MAX_GROUP_ID + 1) if i not in taken), None)
        if n is None:
            return f"school {c['school_id']!r} has more than {MAX_GROUP_ID} classes"
        taken.add(n)
        c["group_id"] = n
    return None


def full_name(p: dict) -> str:
    return " ".join(x for x in (p.get("first_name"), p.get("middle_name"), p.get("last_name")) if x)


def search_text(*parts: str | None) -> str:
    """What people are found by: casefolded, so 'müller' finds 'MÜLLER' on every database."""
    return " ".join(p for p in parts if p).casefold()


def class_name(c: dict, courses: dict) -> str:
    """class_display_name, else the course name and class number, else whichever exists, else the id."""
    course = courses.get(c["course_id"]) or {}
    joined = " ".join(x for x in (course.get("name"), c.get("class_number")) if x)
    return c.get("display_name") or joined or c["class_id"]


def class_views(docs: dict[str, dict]) -> dict[str, list[tuple]]:
    """Per school, its classes as plain tuples ``(name, group_id, teachers, pupils)`` (people as (id, name)):
    teachers in instructor order, pupils by last name, first name. Cheap to compare between two rosters."""
    by_class: dict[str, list[dict]] = {}
    for m in docs["members"].values():
        by_class.setdefault(m["class_id"], []).append(m)
    teachers = {pid: full_name(t) for pid, t in docs["teachers"].items()}
    pupils = {pid: (full_name(p), (p["last_name"].casefold(), p["first_name"].casefold(), pid))
              for pid, p in docs["pupils"].items()}
    out: dict[str, list[tuple]] = {}
    for cid, c in docs["classes"].items():
        members = by_class.get(cid, [])
        leads = sorted((m["position"], m["person_id"]) for m in members
                       if m["role"] == "teacher" and m["person_id"] in teachers)
        joined = sorted(pupils[m["person_id"]][1] for m in members
                        if m["role"] == "pupil" and m["person_id"] in pupils)
        out.setdefault(c["school_id"], []).append((
            class_name(c, docs["courses"]), c["group_id"], tuple((pid, teachers[pid]) for _, pid in leads),
            tuple((k[2], pupils[k[2]][0]) for k in joined)))
    for views in out.values():
        views.sort(key=lambda v: (v[0].casefold(), v[1]))
    return out


def as_school_classes(views: list[tuple]) -> list[SchoolClass]:
    """``class_views`` of one school as the blueprint's Classroom classes."""
    return [SchoolClass(name=name, group_id=group, teachers=[Person(id=i, name=n) for i, n in leads],
                        pupils=[Person(id=i, name=n) for i, n in members]) for name, group, leads, members in views]


def school_classes(docs: dict[str, dict]) -> dict[str, list[SchoolClass]]:
    """Classroom classes per school (see ``class_views``)."""
    return {sid: as_school_classes(v) for sid, v in class_views(docs).items()}
