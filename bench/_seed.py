"""Bulk seeding for benchmarks: devices and command history straight into the database (fast, set-based)."""

from __future__ import annotations

import datetime as dt
import os
import random
import uuid

from sqlalchemy import insert

from app.db.models import Command, CommandEvent, Device, QueueItem, School
from tests.support.db import truncate_all

NAMES = ["Lindenhof", "Schiller", "Nordstadt", "Goethe", "Humboldt", "Kepler", "Curie", "Astrid-Lindgren"]


def seed_devices(engine, n: int, schools: int = 154, now: dt.datetime | None = None) -> list[str]:
    now = now or dt.datetime.now(dt.timezone.utc)
    truncate_all(engine)
    rng = random.Random(7)
    with engine.begin() as c:
        c.execute(insert(School), [{"id": f"school-{i:03d}", "name": f"Schule {NAMES[i % len(NAMES)]} {i}",
                                    "enroll_token_hash": "", "created_at": now} for i in range(schools)])
        rows, udids = [], []
        for i in range(n):
            udid = f"00008101-{i:016X}"
            udids.append(udid)
            rows.append({"udid": udid, "serial": f"DMP{i:09d}", "school_id": f"school-{i % schools:03d}",
                         "role": "teacher" if i % 25 == 0 else "pupil", "enrollment_state": "enrolled",
                         "device_name": f"{NAMES[i % len(NAMES)]}-iPad-{i:05d}", "product_name": "iPad13,18",
                         "model_name": "iPad", "os_version": rng.choice(["17.5.1", "17.4.1", "18.1"]),
                         "cert_fingerprint": os.urandom(32).hex(), "push_token": os.urandom(32).hex(),
                         "push_magic": str(uuid.uuid4()), "topic": "com.apple.mgmt.External.bench",
                         "last_seen_at": now - dt.timedelta(minutes=rng.randint(0, 10_000)), "created_at": now})
            if len(rows) == 5000:
                c.execute(insert(Device), rows)
                rows = []
        if rows:
            c.execute(insert(Device), rows)
    return udids


def seed_history(engine, udids: list[str], rows: int, now: dt.datetime | None = None, chunk: int = 20_000) -> None:
    """``rows`` finished queue rows (+ their events), spread over the devices, in commands of 25k."""
    now = now or dt.datetime.now(dt.timezone.utc)
    per_cmd = len(udids)
    n_cmds = max(1, rows // per_cmd)
    with engine.begin() as c:
        for k in range(n_cmds):
            cu = str(uuid.uuid4()).upper()
            when = now - dt.timedelta(days=n_cmds - k)
            c.execute(insert(Command).values(uuid=cu, request_type="DeviceInformation", body=b"<plist/>",
                                             created_at=when, job_id=None))
            batch, events = [], []
            for u in udids:
                batch.append({"udid": u, "command_uuid": cu, "status": "acknowledged", "priority": 0,
                              "queued_at": when, "sent_at": when, "sent_count": 1, "completed_at": when})
                events.append({"udid": u, "command_uuid": cu, "status": "acknowledged", "at": when})
                if len(batch) == chunk:
                    c.execute(insert(QueueItem), batch)
                    c.execute(insert(CommandEvent), events)
                    batch, events = [], []
            if batch:
                c.execute(insert(QueueItem), batch)
                c.execute(insert(CommandEvent), events)
