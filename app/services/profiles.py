"""Profile versions (built and signed once per version) and pushing them to devices."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace

from sqlalchemy import func, select

from app.db.models import Profile
from app.services.clock import Clock, utcnow
from app.services.commands import CommandService, Enqueued, Target
from app.storage.sql_base import SQLStore
from mdm import plist
from mdm.commands import InstallProfile
from mdm.errors import NotFound
from profiles.secrets import has_secrets
from profiles.signing import sign_profile

log = logging.getLogger("schoolmdm.profiles")


@dataclass(frozen=True)
class ProfileVersion:
    id: int
    identifier: str
    name: str
    version: int
    content_hash: str
    created: bool


class ProfileService(SQLStore):
    def __init__(self, sessions, pki, commands: CommandService, *, clock: Clock = utcnow,
                 encrypt_secrets: bool = True) -> None:
        super().__init__(sessions)
        self.pki = pki
        self.commands = commands
        self.clock = clock
        self.encrypt_secrets = encrypt_secrets

    def plist_of(self, profile_id: int) -> bytes:
        with self.tx() as s:
            body = s.execute(select(Profile.plist).where(Profile.id == profile_id)).scalar()
        if body is None:
            raise NotFound(f"no profile {profile_id}")
        return body

    def has_secrets(self, profile_id: int) -> bool:
        return has_secrets(plist.loads(self.plist_of(profile_id)))

    def encrypts(self, profile_id: int) -> bool:
        """Whether pushes of this profile are encrypted per device (it carries secrets)."""
        return self.encrypt_secrets and self.has_secrets(profile_id)

    def store(self, *, school_id: str | None, role: str | None, name: str, payload: dict,
              content_hash: str | None = None) -> ProfileVersion:
        """Record a built profile; a new version only when its content changed."""
        body = plist.dumps(payload)
        digest = content_hash or hashlib.sha256(body).hexdigest()
        identifier = payload["PayloadIdentifier"]
        with self.tx() as s:
            latest = s.execute(select(Profile).where(Profile.identifier == identifier)
                               .order_by(Profile.version.desc()).limit(1)).scalar()
            if latest is not None and latest.content_hash == digest:
                return ProfileVersion(latest.id, identifier, latest.name, latest.version, digest, False)
        signed = sign_profile(body, self.pki.signing)  # outside the transaction
        with self.tx() as s:
            version = (s.execute(select(func.max(Profile.version)).where(Profile.identifier == identifier))
                       .scalar() or 0) + 1
            p = Profile(school_id=school_id, role=role, name=name, identifier=identifier,
                        payload_uuid=payload["PayloadUUID"], version=version, content_hash=digest,
                        plist=body, signed=signed, created_at=self.clock())
            s.add(p)
            s.flush()
            return ProfileVersion(p.id, identifier, name, version, digest, True)

    def get(self, profile_id: int) -> dict:
        with self.tx() as s:
            p = s.get(Profile, profile_id)
            if p is None:
                raise NotFound(f"no profile {profile_id}")
            return {"id": p.id, "name": p.name, "identifier": p.identifier, "version": p.version,
                    "school_id": p.school_id, "role": p.role, "content_hash": p.content_hash,
                    "signed": p.signed, "created_at": p.created_at.isoformat()}

    def latest_by_name(self, school_id: str, name: str, role: str | None = None) -> dict:
        with self.tx() as s:
            q = select(Profile.id).where(Profile.school_id == school_id, Profile.name == name)
            if role:
                q = q.where(Profile.role == role)
            pid = s.execute(q.order_by(Profile.version.desc(), Profile.id.desc()).limit(1)).scalar()
        if pid is None:
            raise NotFound(f"school {school_id!r} has no profile named {name!r}")
        return self.get(pid)

    def versions(self, school_id: str, name: str, role: str | None) -> list[dict]:
        with self.tx() as s:
            q = select(Profile).where(Profile.school_id == school_id, Profile.name == name)
            if role:
                q = q.where(Profile.role == role)
            return [{"id": p.id, "version": p.version, "identifier": p.identifier, "content_hash": p.content_hash,
                     "created_at": p.created_at.isoformat()} for p in s.execute(q.order_by(Profile.version)).scalars()]

    def list(self, school_id: str | None = None) -> list[dict]:
        with self.tx() as s:
            q = select(Profile).order_by(Profile.school_id, Profile.name, Profile.role, Profile.version.desc())
            if school_id:
                q = q.where(Profile.school_id == school_id)
            out, seen = [], set()
            for p in s.execute(q).scalars():
                if p.identifier in seen:
                    continue
                seen.add(p.identifier)
                out.append({"id": p.id, "name": p.name, "identifier": p.identifier, "version": p.version,
                            "school_id": p.school_id, "role": p.role, "content_hash": p.content_hash})
            return out

    def push_target(self, profile_id: int, target: Target, *, only_changed: bool = True) -> Target:
        """The target of a push of this profile: its school's (and role's) devices unless the target names
        others; with ``only_changed``, less the devices that already have this exact content."""
        p = self.get(profile_id)
        if target.school_id is None and p["school_id"] and not target.udids and not target.everyone:
            target = Target(school_id=p["school_id"], role=p["role"])
        return replace(target, lacking=(p["identifier"], p["content_hash"]) if only_changed else None)

    def push(self, profile_id: int, target: Target, *, actor: str | None = None,
             only_changed: bool = True) -> Enqueued:
        """Queue InstallProfile for the target's devices that lack this exact content."""
        p = self.get(profile_id)
        cmd = InstallProfile(params={"Payload": p["signed"]})
        return self.commands.enqueue(cmd, self.push_target(profile_id, target, only_changed=only_changed),
                                     actor=actor, profile_id=profile_id,
                                     encrypt=self.encrypts(profile_id))



