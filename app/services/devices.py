"""Read side for technicians and the support desk: find devices, show one."""

from __future__ import annotations

import json

from sqlalchemy import exists, func, or_, select

from app.db.models import Command, CommandEvent, Device, DeviceProfile, EnrollmentEvent, QueueItem
from app.services.loans import device_loans, on_loan_to
from app.services.device_setup import setup_summary
from app.storage.sql_base import SQLStore
from mdm.errors import NotFound, ValidationFailed

SORTABLE = {"udid": Device.udid, "serial": Device.serial, "name": Device.device_name,
            "last_seen": Device.last_seen_at, "school": Device.school_id, "os": Device.os_version}


def _iso(t):
    return t.isoformat() if t else None


def device_summary(d: Device) -> dict:
    return {
        "udid": d.udid, "serial": d.serial, "name": d.device_name, "school_id": d.school_id, "role": d.role,
        "enrollment_state": d.enrollment_state, "product_name": d.product_name, "model_name": d.model_name,
        "os_version": d.os_version, "last_seen_at": _iso(d.last_seen_at), "enrolled_at": _iso(d.enrolled_at),
        "pushable": bool(d.push_token) and not d.token_invalid,
        "last_push_status": d.last_push_status,
    }


class DeviceQueries(SQLStore):
    def list(self, *, school_id: str | None = None, state: str | None = None, role: str | None = None,
             os_version: str | None = None, q: str | None = None, sort: str = "udid", desc: bool = False,
             limit: int = 50, offset: int = 0, schools: list[str] | None = None,
             seen_before=None, seen_after=None, commands: str | None = None) -> dict:
        """Devices by filters; ``commands`` is ``pending`` (something queued or sent) or ``failed``
        (a command ended in error); ``seen_before``/``seen_after`` bound the last check-in."""
        if sort not in SORTABLE:
            raise ValidationFailed(f"sort must be one of {', '.join(SORTABLE)}")
        cond = []
        if school_id:
            cond.append(Device.school_id == school_id)
        if schools is not None:
            cond.append(Device.school_id.in_(schools))
        if state:
            cond.append(Device.enrollment_state == state)
        if role:
            cond.append(Device.role == role)
        if os_version:
            cond.append(Device.os_version == os_version)
        if seen_before:
            cond.append(or_(Device.last_seen_at.is_(None), Device.last_seen_at < seen_before))
        if seen_after:
            cond.append(Device.last_seen_at >= seen_after)
        if commands:
            statuses = {"pending": ("queued", "sent", "not_now"), "failed": ("error", "format_error")}.get(commands)
            if statuses is None:
                raise ValidationFailed("commands must be pending or failed")
            cond.append(exists().where(QueueItem.udid == Device.udid, QueueItem.status.in_(statuses)))
        if q:
            like = f"%{q.strip()}%"
            cond.append(or_(Device.serial == q.strip(), Device.udid == q.strip(),
                            Device.device_name.ilike(like), Device.serial.ilike(like),
                            on_loan_to(q)))  # the pupil who has it on loan: name, person_number, sis_username
        col = SORTABLE[sort]
        order = [col.desc() if desc else col.asc(), Device.udid]
        with self.tx() as s:
            total = s.execute(select(func.count()).select_from(Device).where(*cond)).scalar_one()
            rows = s.execute(select(Device).where(*cond).order_by(*order).limit(limit).offset(offset)).scalars()
            items = [device_summary(d) for d in rows]
        return {"items": items, "total": total, "limit": limit, "offset": offset}

    def get(self, udid: str, *, history: int = 100) -> dict:
        with self.tx() as s:
            d = s.get(Device, udid)
            if d is None:
                d = s.execute(select(Device).where(Device.serial == udid)).scalars().first()
            if d is None:
                raise NotFound(f"no device {udid!r}")
            out = device_summary(d)
            out["inventory"] = json.loads(d.inventory) if d.inventory else None
            out["inventory_at"] = _iso(d.inventory_at)
            out["build_version"] = d.build_version
            out["setup"] = setup_summary(s, d.udid)  # AwaitingConfiguration set-up: state and failure reason
            out["loan"], out["loans"] = device_loans(s, d.udid, history)  # the open loan and the loan history
            out["profiles"] = [
                {"identifier": p.identifier, "name": p.display_name, "uuid": p.payload_uuid,
                 "content_hash": p.content_hash, "source": p.source, "updated_at": _iso(p.updated_at)}
                for p in s.execute(select(DeviceProfile).where(DeviceProfile.udid == d.udid)
                                   .order_by(DeviceProfile.identifier)).scalars()
            ]
            out["enrollment_history"] = [
                {"event": e.event, "at": _iso(e.at), "detail": e.detail}
                for e in s.execute(select(EnrollmentEvent).where(EnrollmentEvent.udid == d.udid)
                                   .order_by(EnrollmentEvent.id.desc()).limit(history)).scalars()
            ]
            items = s.execute(
                select(QueueItem, Command.request_type).join(Command, Command.uuid == QueueItem.command_uuid)
                .where(QueueItem.udid == d.udid).order_by(QueueItem.id.desc()).limit(history)
            ).all()
            uuids = [qi.command_uuid for qi, _ in items]
            events: dict[str, list] = {}
            if uuids:
                for ev in s.execute(select(CommandEvent).where(CommandEvent.udid == d.udid,
                                                               CommandEvent.command_uuid.in_(uuids))
                                    .order_by(CommandEvent.id)).scalars():
                    events.setdefault(ev.command_uuid, []).append({"status": ev.status, "at": _iso(ev.at)})
            out["commands"] = [
                {"command_uuid": qi.command_uuid, "request_type": rt, "status": qi.status,
                 "queued_at": _iso(qi.queued_at), "sent_at": _iso(qi.sent_at), "completed_at": _iso(qi.completed_at),
                 "sent_count": qi.sent_count,
                 "error_chain": json.loads(qi.error_chain) if qi.error_chain else None,
                 "history": [{"status": "queued", "at": _iso(qi.queued_at)}] + events.get(qi.command_uuid, [])}
                for qi, rt in items
            ]
        return out

    def command_status(self, command_uuid: str) -> dict:
        with self.tx() as s:
            cmd = s.get(Command, command_uuid)
            if cmd is None:
                raise NotFound(f"no command {command_uuid!r}")
            counts = dict(s.execute(select(QueueItem.status, func.count()).where(QueueItem.command_uuid == command_uuid)
                                    .group_by(QueueItem.status)).all())
        return {"command_uuid": command_uuid, "request_type": cmd.request_type, "created_by": cmd.created_by,
                "created_at": _iso(cmd.created_at), "counts": counts, "total": sum(counts.values())}
