"""Push a school's blueprint: exactly the missing or changed profiles, apps and settings per device.

What a device has is known from acknowledgements: ``device_profiles`` (content
hash per profile identifier) and ``device_items`` (hash per app install or
Settings item). Everything is queued as one job, in one transaction.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import defaultdict

from sqlalchemy import select, update

from app.db.models import Device, DeviceItem, DeviceProfile, Profile
from app.services.clock import Clock, utcnow
from app.storage.interfaces import QueuedCommand
from app.storage.sql_base import SQLStore
from mdm import plist
from mdm.commands import command_class
from profiles.blueprint.models import ROLES, Blueprint
from profiles.commands import device_name_command, install_application, remove_application, school_settings_command
from profiles.secrets import has_secrets


def _h(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _command(cmd: dict) -> tuple[str, bytes]:
    params = {k: v for k, v in cmd.items() if k != "RequestType"}
    c = command_class(cmd["RequestType"])(params=params)
    return c.command_uuid, c.to_plist()


class BlueprintPush(SQLStore):
    def __init__(self, sessions, blueprints, queue, pushes, *, clock: Clock = utcnow,
                 encrypt_secrets: bool = True) -> None:
        super().__init__(sessions)
        self.blueprints = blueprints
        self.queue = queue
        self.pushes = pushes
        self.clock = clock
        self.encrypt_secrets = encrypt_secrets

    def _devices(self, s, school_id: str, role: str, udids: list[str] | None) -> list:
        q = select(Device.udid, Device.serial, Device.device_name).where(
            Device.school_id == school_id, Device.role == role, Device.enrollment_state == "enrolled")
        if udids is not None:
            q = q.where(Device.udid.in_(udids))
        return s.execute(q.order_by(Device.udid)).all()

    def _latest_profiles(self, s, school_id: str, role: str) -> list[Profile]:
        rows = s.execute(select(Profile).where(Profile.school_id == school_id, Profile.role == role)).scalars().all()
        latest: dict[str, Profile] = {}
        for p in rows:
            if p.identifier not in latest or p.version > latest[p.identifier].version:
                latest[p.identifier] = p
        return sorted(latest.values(), key=lambda p: p.name)

    def plan(self, school_id: str, *, roles=ROLES, udids: list[str] | None = None) -> tuple[int, list[QueuedCommand]]:
        version, bp = self.blueprints.blueprint(school_id)
        items: list[QueuedCommand] = []
        with self.tx() as s:
            for role in roles:
                devices = self._devices(s, school_id, role, udids)
                if not devices:
                    continue
                ids = [d.udid for d in devices]
                have_p = {(r.udid, r.identifier): r.content_hash for r in s.execute(
                    select(DeviceProfile.udid, DeviceProfile.identifier, DeviceProfile.content_hash)
                    .where(DeviceProfile.udid.in_(ids)))}
                have_i = {(r.udid, r.key): (r.content_hash, r.detail) for r in s.execute(
                    select(DeviceItem.udid, DeviceItem.key, DeviceItem.content_hash, DeviceItem.detail)
                    .where(DeviceItem.udid.in_(ids)))}
                for p in self._latest_profiles(s, school_id, role):
                    need = [u for u in ids if have_p.get((u, p.identifier)) != p.content_hash]
                    if need:
                        cu = str(uuid.uuid4()).upper()
                        body = plist.dumps({"CommandUUID": cu, "Command": {"RequestType": "InstallProfile",
                                                                            "Payload": p.signed}})
                        items.append(QueuedCommand(cu, "InstallProfile", body, need, profile_id=p.id,
                                                   encrypt=self.encrypt_secrets and has_secrets(plist.loads(p.plist))))
                items += self._apps(bp, role, ids, have_i)
                items += self._settings(bp, role, devices, have_i)
        return version, items

    def _apps(self, bp: Blueprint, role: str, ids: list[str], have) -> list[QueuedCommand]:
        out, wanted = [], set()
        for app in bp.apps_for(role):
            key = f"app:{app.key}"
            if app.state == "present":
                wanted.add(key)
                cmd = install_application(app)
                digest = _h(cmd)
                need = [u for u in ids if have.get((u, key), (None,))[0] != digest]
                if need:
                    cu, body = _command(cmd)
                    out.append(QueuedCommand(cu, "InstallApplication", body, need, item_key=key, item_hash=digest))
            else:  # listed as absent: remove it where we know it is installed
                need = [u for u in ids if (u, key) in have or (u, f"app:{app.bundle_id}") in have]
                if need:
                    cu, body = _command(remove_application(app.bundle_id))
                    out.append(QueuedCommand(cu, "RemoveApplication", body, need,
                                             item_key=f"app-removed:{app.key}", item_hash=""))
        # apps this server installed that have left the blueprint altogether
        gone: dict[tuple[str, str], list[str]] = defaultdict(list)
        for (u, key), (_, detail) in have.items():
            if key.startswith("app:") and key not in wanted and u in ids:
                bundle = detail or key[4:]
                if "." in bundle:
                    gone[(key, bundle)].append(u)
        for (key, bundle), need in sorted(gone.items()):
            if key[4:] in {a.key for a in bp.apps_for(role) if a.state == "absent"}:
                continue
            cu, body = _command(remove_application(bundle))
            out.append(QueuedCommand(cu, "RemoveApplication", body, need, item_key=f"app-removed:{key[4:]}",
                                     item_hash=""))
        return out

    def _settings(self, bp: Blueprint, role: str, devices, have) -> list[QueuedCommand]:
        out = []
        school_cmd = school_settings_command(bp)
        if school_cmd:
            digest = _h(school_cmd)
            need = [d.udid for d in devices if have.get((d.udid, "settings:school"), (None,))[0] != digest]
            if need:
                cu, body = _command(school_cmd)
                out.append(QueuedCommand(cu, "Settings", body, need, item_key="settings:school", item_hash=digest))
        for d in devices:
            cmd = device_name_command(bp, role, d.serial or d.udid[-8:])
            if cmd is None:
                break
            digest = _h(cmd)
            if have.get((d.udid, "settings:name"), (None,))[0] != digest:
                cu, body = _command(cmd)
                out.append(QueuedCommand(cu, "Settings", body, [d.udid], item_key="settings:name", item_hash=digest))
        return out

    def push(self, school_id: str, *, actor: str, roles=ROLES, udids: list[str] | None = None,
             priority: int = 0) -> dict:
        """Queue the plan as one job (kind ``blueprint``) and request pushes; returns the job row."""
        version, items = self.plan(school_id, roles=roles, udids=udids)
        now = self.clock()
        job = {"id": str(uuid.uuid4()), "kind": "blueprint", "request_type": f"blueprint v{version}",
               "target": f"school:{school_id}" + (f"/{roles[0]}" if len(roles) == 1 else ""),
               "school_id": school_id, "created_by": actor, "created_at": now, "expires_at": None}
        self.queue.enqueue_batch(items, now=now, priority=priority, created_by=actor, job=job)
        targeted = sorted({u for i in items for u in i.udids})
        if targeted:
            self.pushes.request(targeted, now)
            with self.tx() as s:
                for k in range(0, len(targeted), 5000):
                    s.execute(update(Device).where(Device.udid.in_(targeted[k:k + 5000]))
                              .values(blueprint_version=version))
        return {"job_id": job["id"], "version": version, "devices": len(targeted),
                "commands": [{"request_type": i.request_type, "devices": len(i.udids), "item": i.item_key,
                              "profile_id": i.profile_id} for i in items]}



