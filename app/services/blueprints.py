"""School blueprints in the database: check, import (versioned), show, diff.

An import validates every file first (errors name file, line and key) and
changes nothing when any is wrong; then, in one transaction, it stores a new
blueprint version for each school whose merged blueprint changed and a new
profile version for each profile whose content changed. Profiles are signed
once per version, outside the transaction.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from app.db.models import BlueprintVersion, Profile, School
from app.services.clock import Clock, utcnow
from app.storage.sql_base import SQLStore
from mdm import plist
from mdm.errors import NotFound
from profiles.blueprint import Blueprint, BlueprintError, check
from profiles.blueprint.classroom import Classroom, SchoolClass
from profiles.blueprint.errors import errors_only
from profiles.blueprint.loader import load_problems
from profiles.blueprint.models import ROLES
from profiles.issuer import CAIssuer, IdentityStore
from profiles.profile import BuiltProfile, build_blueprint, build_profile
from profiles.secrets import MASK, SECRET_KEYS, masked
from profiles.signing import sign_profile

log = logging.getLogger("schoolmdm.blueprints")


@dataclass
class ImportReport:
    schools_added: list[str] = field(default_factory=list)
    schools_changed: list[str] = field(default_factory=list)
    schools_unchanged: list[str] = field(default_factory=list)
    profiles_changed: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def _hash(doc: dict) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _sources(directory: Path, school_id: str) -> dict[str, str]:
    files = {"base.yaml": directory / "base.yaml", f"schools/{school_id}.yaml": directory / "schools" / f"{school_id}.yaml"}
    return {name: p.read_text(encoding="utf-8") for name, p in files.items() if p.is_file()}


class BlueprintService(SQLStore):
    def __init__(self, sessions, pki, *, identities: IdentityStore, clock: Clock = utcnow,
                 roster_classes: Callable[[str], list[SchoolClass]] | None = None) -> None:
        super().__init__(sessions)
        self.pki = pki
        #: Classroom and EAP-TLS identities issued before (app.storage.sql_identities): a rebuild in
        #: any instance, after any restart, reuses them while they are valid (profiles.issuer), so a
        #: changed profile keeps the identity the iPads already have
        self.identities = identities
        self.clock = clock
        #: a school's classes from the imported roster (app/services/roster.py); they replace the blueprint's
        self.roster_classes = roster_classes

    def with_roster(self, bp: Blueprint, classes: list[SchoolClass] | None = None) -> Blueprint:
        """The blueprint with the roster's classes as its Classroom classes, when the school has any."""
        if classes is None:
            classes = self.roster_classes(bp.school_id) if self.roster_classes and bp.school else []
        if not classes:
            return bp
        org = bp.classroom.organisation if bp.classroom else None
        return bp.model_copy(update={"classroom": Classroom(organisation=org, classes=classes)})

    def issuer(self) -> CAIssuer:
        return CAIssuer(self.pki.ca, store=self.identities)

    def check(self, directory: Path | str) -> list:
        return check(directory)

    def import_dir(self, directory: Path | str, *, actor: str) -> ImportReport:
        directory = Path(directory)
        city, problems = load_problems(directory)
        errors = errors_only(problems)
        if city is None or errors:
            raise BlueprintError(errors or problems)
        report = ImportReport(warnings=[str(p) for p in problems])
        issuer = self.issuer()
        plan = []  # (school_id, name, merged, hash, builds)
        for sid, bp in sorted(city.schools.items()):
            merged = bp.model_dump(mode="json")
            built_from = self.with_roster(bp)
            builds = {role: build_blueprint(built_from, role, issuer=issuer) for role in ROLES}
            plan.append((sid, bp.school.name if bp.school else sid, merged, _hash(merged), builds))
        changed = self._changed([(sid, role, p) for sid, _, _, _, builds in plan
                                 for role, b in builds.items() for p in b.profiles])
        signed = {p.identifier: sign_profile(p.plist, self.pki.signing) for *_, p, _ in changed}
        now = self.clock()
        with self.tx() as s:
            for sid, name, merged, digest, _ in plan:
                school = s.get(School, sid)
                if school is None:
                    s.add(School(id=sid, name=name, enroll_token_hash="", created_at=now))
                    report.schools_added.append(sid)
                elif school.name != name:
                    school.name = name
                last = s.execute(select(BlueprintVersion).where(BlueprintVersion.school_id == sid)
                                 .order_by(BlueprintVersion.version.desc()).limit(1)).scalar()
                if last is not None and last.content_hash == digest:
                    report.schools_unchanged.append(sid)
                    continue
                if last is not None and sid not in report.schools_added:
                    report.schools_changed.append(sid)
                s.flush()
                s.add(BlueprintVersion(school_id=sid, version=(last.version if last else 0) + 1, content_hash=digest,
                                       merged=json.dumps(merged, sort_keys=True),
                                       sources=json.dumps(_sources(directory, sid)), created_by=actor, created_at=now))
            s.flush()
            for sid, role, p, version in changed:
                s.add(Profile(school_id=sid, role=role, name=p.name, identifier=p.identifier, payload_uuid=p.uuid,
                              version=version, content_hash=p.content_hash, plist=p.plist,
                              signed=signed[p.identifier], created_at=now))
                report.profiles_changed.append({"school": sid, "role": role, "name": p.name,
                                                "identifier": p.identifier, "version": version})
        log.info("blueprint import by %s: %d added, %d changed, %d profile versions", actor,
                 len(report.schools_added), len(report.schools_changed), len(report.profiles_changed))
        return report

    def _changed(self, built: list[tuple[str, str, BuiltProfile]]) -> list[tuple[str, str, BuiltProfile, int]]:
        """(school, role, profile, next version) for each profile whose content differs from its latest version."""
        idents = [p.identifier for _, _, p in built]
        with self.tx() as s:
            rows = s.execute(select(Profile.identifier, Profile.version, Profile.content_hash)
                             .where(Profile.identifier.in_(idents))).all() if idents else []
        latest, versions = {}, {}
        for ident, ver, h in rows:
            if ver > versions.get(ident, 0):
                versions[ident], latest[ident] = ver, h
        return [(sid, role, p, versions.get(p.identifier, 0) + 1) for sid, role, p in built
                if latest.get(p.identifier) != p.content_hash]

    def classroom_versions(self, classes: dict[str, list[SchoolClass]]) -> list[tuple]:
        """New, signed Classroom profile versions for schools whose classes are now ``classes``.

        Built from each school's latest blueprint (schools without one are skipped); store them
        with ``add_profiles`` in the caller's transaction.
        """
        issuer, built = self.issuer(), []
        for sid in sorted(classes):
            try:
                _, bp = self.blueprint(sid, roster=False)
            except NotFound:
                continue
            bp = self.with_roster(bp, classes[sid])
            for role in ROLES:
                p = build_profile(bp, role, "classroom", issuer=issuer)
                if p is not None:
                    built.append((sid, role, p))
        return [(sid, role, p, v, sign_profile(p.plist, self.pki.signing)) for sid, role, p, v in self._changed(built)]

    def add_profiles(self, s, pending: list[tuple], now) -> list[dict]:
        """Store profile versions from ``classroom_versions`` in session ``s``."""
        out = []
        for sid, role, p, version, signed in pending:
            s.add(Profile(school_id=sid, role=role, name=p.name, identifier=p.identifier, payload_uuid=p.uuid,
                          version=version, content_hash=p.content_hash, plist=p.plist, signed=signed, created_at=now))
            out.append({"school": sid, "role": role, "name": p.name, "identifier": p.identifier, "version": version})
        return out

    def _version(self, s, school_id: str, version: int | None) -> BlueprintVersion:
        q = select(BlueprintVersion).where(BlueprintVersion.school_id == school_id)
        q = q.where(BlueprintVersion.version == version) if version else q.order_by(BlueprintVersion.version.desc())
        row = s.execute(q.limit(1)).scalar()
        if row is None:
            raise NotFound(f"school {school_id!r} has no blueprint" + (f" version {version}" if version else ""))
        return row

    def show(self, school_id: str, version: int | None = None) -> dict:
        with self.tx() as s:
            row = self._version(s, school_id, version)
            return {"school_id": school_id, "version": row.version, "created_at": row.created_at.isoformat(),
                    "created_by": row.created_by, "blueprint": masked(json.loads(row.merged))}

    def blueprint(self, school_id: str, version: int | None = None, *, roster: bool = True) -> tuple[int, Blueprint]:
        """A stored blueprint version, with the roster's classes (``roster=True``) as profiles are built."""
        with self.tx() as s:
            row = self._version(s, school_id, version)
            number, merged = row.version, json.loads(row.merged)
        bp = Blueprint.model_validate(merged)
        return number, self.with_roster(bp) if roster else bp

    def versions(self, school_id: str) -> list[dict]:
        with self.tx() as s:
            return [{"version": r.version, "created_at": r.created_at.isoformat(), "created_by": r.created_by}
                    for r in s.execute(select(BlueprintVersion).where(BlueprintVersion.school_id == school_id)
                                       .order_by(BlueprintVersion.version)).scalars()]

    def diff(self, school_id: str, old: int | None = None, new: int | None = None) -> dict:
        """What changed between two versions (default: the last two), key by key, secrets masked."""
        with self.tx() as s:
            b = self._version(s, school_id, new)
            a = self._version(s, school_id, old or b.version - 1) if (old or b.version > 1) else None
            doc_b = json.loads(b.merged)
            doc_a = json.loads(a.merged) if a else {}
        changes = [_mask_change(c) for c in _changes(doc_a, doc_b, ())]
        return {"school_id": school_id, "from": a.version if a else None, "to": b.version, "changes": changes}


def _changes(a, b, path):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a:
                yield {"key": _key(path + (k,)), "change": "added", "new": b[k]}
            elif k not in b:
                yield {"key": _key(path + (k,)), "change": "removed", "old": a[k]}
            else:
                yield from _changes(a[k], b[k], path + (k,))
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            yield from _changes(x, y, path + (i,))
    elif a != b:
        yield {"key": _key(path), "change": "changed", "old": a, "new": b}


def _mask_change(c: dict) -> dict:
    secret = c["key"].rsplit(".", 1)[-1].lower() in SECRET_KEYS
    return {k: (MASK if secret else masked(v)) if k in ("old", "new") else v for k, v in c.items()}


def _key(path: tuple) -> str:
    return ".".join(str(p) for p in path)


def profile_diff(old_plist: bytes | None, new_plist: bytes, label: str) -> str:
    """Unified diff of two profile versions as XML plists, secrets masked."""
    def text(b: bytes | None) -> list[str]:
        return plist.dumps(masked(plist.loads(b), tell_changes=True)).decode().splitlines(keepends=True) if b else []
    return "".join(difflib.unified_diff(text(old_plist), text(new_plist), f"{label} (old)", f"{label} (new)"))
