"""Read-only aggregates for the dashboard: GROUP BY counts, never a whole fleet in memory.

Every query here is bounded: counts are computed in SQL, lists are limited, and the
device lists themselves come from ``DeviceQueries.list`` (paginated).
"""

from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import and_, case, func, or_, select

from app.db.models import Command, Device, DeviceProfile, Job, Profile, QueueItem, School
from app.services.clock import Clock, utcnow
from app.services.jobs import BUCKET, BUCKETS, PENDING
from app.storage.sql_base import SQLStore

STATES = ("enrolled", "authenticated", "pending", "unenrolled")
FAILED = ("error", "format_error")


def _iso(t: dt.datetime | None) -> str | None:
    return t.isoformat() if t else None


def first_error(chain_json: str | None) -> str | None:
    """The first human-readable line of an ErrorChain (stored as JSON)."""
    if not chain_json:
        return None
    try:
        chain = json.loads(chain_json)
    except ValueError:
        return None
    if not isinstance(chain, list) or not chain or not isinstance(chain[0], dict):
        return None
    e = chain[0]
    text = e.get("LocalizedDescription") or e.get("USEnglishDescription") or ""
    return f"{e.get('ErrorDomain', '?')} {e.get('ErrorCode', '?')}: {text}".strip()


class DashboardQueries(SQLStore):
    def __init__(self, sessions, *, clock: Clock = utcnow) -> None:
        super().__init__(sessions)
        self.clock = clock

    # --- city overview -------------------------------------------------------------------
    def school_overview(self, schools: list[str] | None) -> dict:
        """Every visible school with its device counts by enrollment state (one GROUP BY)."""
        sq = select(School.id, School.name).order_by(School.name, School.id)
        dq = select(Device.school_id, Device.enrollment_state, func.count()).group_by(
            Device.school_id, Device.enrollment_state)
        if schools is not None:
            sq = sq.where(School.id.in_(schools))
            dq = dq.where(Device.school_id.in_(schools))
        with self.tx() as s:
            names = s.execute(sq).all()
            counts = s.execute(dq).all()
        by_school: dict[str | None, dict[str, int]] = {}
        for school_id, state, n in counts:
            by_school.setdefault(school_id, dict.fromkeys(STATES, 0))[state] = n
        rows = []
        for school_id, name in names:
            c = by_school.pop(school_id, dict.fromkeys(STATES, 0))
            rows.append({"id": school_id, "name": name, "counts": c, "total": sum(c.values())})
        unassigned = by_school.pop(None, None)
        totals = dict.fromkeys(STATES, 0)
        for r in rows:
            for k, v in r["counts"].items():
                totals[k] = totals.get(k, 0) + v
        if unassigned:
            for k, v in unassigned.items():
                totals[k] = totals.get(k, 0) + v
        return {"schools": rows, "unassigned": unassigned, "totals": totals, "total": sum(totals.values())}

    def job_counts(self, job_ids: list[str]) -> dict[str, dict[str, int]]:
        """Counts by bucket for several jobs in one GROUP BY."""
        out = {j: dict.fromkeys(BUCKETS, 0) for j in job_ids}
        if not job_ids:
            return out
        with self.tx() as s:
            rows = s.execute(
                select(Command.job_id, QueueItem.status, func.count())
                .join(Command, Command.uuid == QueueItem.command_uuid)
                .where(Command.job_id.in_(job_ids)).group_by(Command.job_id, QueueItem.status)).all()
        for job_id, status, n in rows:
            if status in BUCKET:
                out[job_id][BUCKET[status]] += n
        return out

    def running_jobs(self, schools: list[str] | None, *, limit: int = 20) -> dict:
        """Jobs (not cancelled) with a device still pending, newest first.

        One EXISTS probe per job through the (command_uuid, status) index: cheap however many
        devices a job has; ``jobs.finished_at`` is not trusted because a retry reopens a job.
        """
        pending = (select(QueueItem.id).join(Command, Command.uuid == QueueItem.command_uuid)
                   .where(Command.job_id == Job.id, QueueItem.status.in_(PENDING)).exists())
        cond = [Job.cancelled_at.is_(None), pending]
        if schools is not None:
            cond.append(Job.school_id.in_(schools))
        with self.tx() as s:
            total = s.execute(select(func.count()).select_from(Job).where(*cond)).scalar_one()
            jobs = s.execute(select(Job).where(*cond).order_by(Job.created_at.desc(), Job.id)
                             .limit(limit)).scalars().all()
            items = [{"id": j.id, "request_type": j.request_type, "target": j.target, "school_id": j.school_id,
                      "created_by": j.created_by, "created_at": _iso(j.created_at), "total": j.total} for j in jobs]
        counts = self.job_counts([j["id"] for j in items])
        for j in items:
            j["counts"] = counts[j["id"]]
        return {"items": items, "total": total}

    def recent_failures(self, schools: list[str] | None, *, days: int = 7, limit: int = 20) -> dict:
        """Commands queued in the last ``days`` that ended in Error or CommandFormatError.

        The window is taken on ``commands.created_at`` (one row per bulk command, far fewer than
        queue rows); the queue rows are then reached through their (command_uuid, status) index.
        """
        since = self.clock() - dt.timedelta(days=days)
        recent = select(Command.uuid).where(Command.created_at >= since)
        cond = [QueueItem.command_uuid.in_(recent), QueueItem.status.in_(FAILED)]
        if schools is not None:
            cond.append(Device.school_id.in_(schools))
        base = (select(QueueItem.udid, QueueItem.command_uuid, QueueItem.status, QueueItem.completed_at,
                       QueueItem.error_chain, Command.request_type, Command.job_id, Device.serial,
                       Device.device_name, Device.school_id)
                .join(Command, Command.uuid == QueueItem.command_uuid)
                .join(Device, Device.udid == QueueItem.udid).where(*cond))
        with self.tx() as s:
            total = s.execute(select(func.count()).select_from(base.subquery())).scalar_one()
            rows = s.execute(base.order_by(QueueItem.completed_at.desc(), QueueItem.id.desc()).limit(limit)).all()
        items = [{"udid": r.udid, "serial": r.serial, "name": r.device_name, "school_id": r.school_id,
                  "command_uuid": r.command_uuid, "request_type": r.request_type, "job_id": r.job_id,
                  "status": r.status, "completed_at": _iso(r.completed_at), "error": first_error(r.error_chain)}
                 for r in rows]
        return {"items": items, "total": total, "since": _iso(since), "days": days}

    # --- one school ----------------------------------------------------------------------
    def _latest_profiles(self, school_id: str):
        """Subquery: the latest version of each profile of this school (and of the city-wide ones)."""
        mine = or_(Profile.school_id == school_id, Profile.school_id.is_(None))
        newest = (select(Profile.identifier, func.max(Profile.version).label("version"))
                  .where(mine).group_by(Profile.identifier).subquery())
        return (select(Profile.id, Profile.identifier, Profile.name, Profile.role, Profile.school_id,
                       Profile.version, Profile.content_hash, Profile.created_at)
                .join(newest, and_(Profile.identifier == newest.c.identifier,
                                   Profile.version == newest.c.version))).subquery()

    def school_rollout(self, school_id: str) -> dict:
        """Enrolled / known devices, and per latest profile version how many enrolled devices have it."""
        latest = self._latest_profiles(school_id)
        enrolled = and_(Device.school_id == school_id, Device.enrollment_state == "enrolled")
        with self.tx() as s:
            states = dict.fromkeys(STATES, 0)
            for state, n in s.execute(select(Device.enrollment_state, func.count())
                                      .where(Device.school_id == school_id).group_by(Device.enrollment_state)):
                states[state] = n
            by_role = dict(s.execute(select(Device.role, func.count()).where(enrolled).group_by(Device.role)).all())
            profiles = s.execute(select(latest).order_by(latest.c.name, latest.c.role, latest.c.identifier)).all()
            have = {ident: (anyv, onlatest) for ident, anyv, onlatest in s.execute(
                select(DeviceProfile.identifier, func.count(),
                       func.sum(case((DeviceProfile.content_hash == latest.c.content_hash, 1), else_=0)))
                .join(latest, latest.c.identifier == DeviceProfile.identifier)
                .join(Device, Device.udid == DeviceProfile.udid).where(enrolled)
                .group_by(DeviceProfile.identifier))}
        n_enrolled = states["enrolled"]
        items = []
        for p in profiles:
            anyv, onlatest = have.get(p.identifier, (0, 0))
            eligible = by_role.get(p.role, 0) if p.role else n_enrolled
            items.append({"id": p.id, "identifier": p.identifier, "name": p.name, "role": p.role,
                          "school_id": p.school_id, "version": p.version, "created_at": _iso(p.created_at),
                          "eligible": eligible, "on_latest": int(onlatest or 0), "any_version": int(anyv or 0)})
        return {"states": states, "enrolled": n_enrolled, "known": sum(states.values()), "by_role": by_role,
                "profiles": items}

    def profile_versions(self, school_id: str, *, per_profile: int = 10) -> list[dict]:
        """The school's profiles (and city-wide ones) with their versions, metadata only (no blobs)."""
        q = (select(Profile.id, Profile.identifier, Profile.name, Profile.role, Profile.school_id,
                    Profile.version, Profile.content_hash, Profile.created_at)
             .where(or_(Profile.school_id == school_id, Profile.school_id.is_(None)))
             .order_by(Profile.name, Profile.identifier, Profile.version.desc()))
        out: dict[str, dict] = {}
        with self.tx() as s:
            for p in s.execute(q):
                entry = out.setdefault(p.identifier, {"identifier": p.identifier, "name": p.name, "role": p.role,
                                                      "school_id": p.school_id, "versions": [], "count": 0})
                entry["count"] += 1
                if len(entry["versions"]) < per_profile:
                    entry["versions"].append({"id": p.id, "version": p.version, "content_hash": p.content_hash,
                                              "created_at": _iso(p.created_at)})
        return list(out.values())

    # --- devices -------------------------------------------------------------------------
    def command_jobs(self, command_uuids: list[str]) -> dict[str, str]:
        """The job of each command (for links from a device's command history)."""
        if not command_uuids:
            return {}
        with self.tx() as s:
            return {u: j for u, j in s.execute(select(Command.uuid, Command.job_id)
                                               .where(Command.uuid.in_(command_uuids))) if j}

    def exact_devices(self, q: str, schools: list[str] | None, *, limit: int = 2) -> list[str]:
        """UDIDs whose serial, UDID or name is exactly ``q`` (serial and UDID also upper-cased)."""
        q = q.strip()
        if not q:
            return []
        keys = {q, q.upper()}
        cond = [or_(Device.serial.in_(keys), Device.udid.in_(keys), func.lower(Device.device_name) == q.lower())]
        if schools is not None:
            cond.append(Device.school_id.in_(schools))
        with self.tx() as s:
            return list(s.execute(select(Device.udid).where(*cond).order_by(Device.udid).limit(limit)).scalars())
