"""The storage contract: what every backend of the storage interfaces must do.

Runs against the SQLAlchemy stores on SQLite, and on PostgreSQL when
DATABASE_URL is set (``.ci/run`` does both), with a fixed clock.
"""

from __future__ import annotations

import datetime as dt

import pytest

from mdm.checkin import parse_checkin, build_checkin
from mdm.commands import build_report, parse_report
from mdm.errors import NotEnrolled, UnknownCommand

T0 = dt.datetime(2026, 9, 1, 7, 30, tzinfo=dt.timezone.utc)
TOPIC = "com.apple.mgmt.External.test"


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


@pytest.fixture
def stores(container):
    container.schools.upsert("s1", "School One", "x", T0)
    return container


def enroll(c, udid: str, fp: str | None = None) -> None:
    auth = parse_checkin(build_checkin("Authenticate", udid, Topic=TOPIC, SerialNumber="SN" + udid[-6:]))
    c.checkin_store.authenticate(auth, fp or "fp-" + udid, "s1", T0)
    tu = parse_checkin(build_checkin("TokenUpdate", udid, Topic=TOPIC, Token=b"\x01" * 32, PushMagic="PM-" + udid))
    assert c.checkin_store.token_update(tu, T0) is True


def report(udid: str, status: str, cu: str | None = None):
    return parse_report(build_report(udid, status, cu))


def test_checkin_store_lifecycle(stores):
    s = stores.checkin_store
    assert s.device_auth("U1") is None
    enroll(stores, "U1", "fp1")
    auth = s.device_auth("U1")
    assert auth.cert_fingerprint == "fp1" and auth.enrollment_state == "enrolled"
    assert s.fingerprint_owner("fp1") == "U1"
    tu = parse_checkin(build_checkin("TokenUpdate", "U1", Topic=TOPIC, Token=b"\x02" * 32, PushMagic="PM2"))
    assert s.token_update(tu, at(1)) is False  # a refresh, not a new enrollment
    s.checkout("U1", at(2))
    assert s.device_auth("U1").enrollment_state == "unenrolled"
    with pytest.raises(NotEnrolled):
        s.checkout("nobody", at(3))
    with pytest.raises(NotEnrolled):
        s.token_update(parse_checkin(build_checkin("TokenUpdate", "U9", Topic=TOPIC, Token=b"\x01",
                                                   PushMagic="x")), at(3))


def test_queue_priority_fifo_and_reports(stores):
    enroll(stores, "U1")
    q = stores.queue
    q.enqueue(command_uuid="A", request_type="ProfileList", body=b"a", udids=["U1"], now=at(0))
    q.enqueue(command_uuid="B", request_type="SecurityInfo", body=b"b", udids=["U1"], now=at(1))
    q.enqueue(command_uuid="C", request_type="DeviceLock", body=b"c", udids=["U1"], now=at(2), priority=5)
    out, nxt = q.report_and_next("U1", report("U1", "Idle"), at(3))
    assert out.command_uuid is None and nxt.command_uuid == "C" and nxt.body == b"c"
    out, nxt = q.report_and_next("U1", report("U1", "Acknowledged", "C"), at(4))
    assert out.status == "acknowledged" and out.request_type == "DeviceLock" and nxt.command_uuid == "A"
    out, nxt = q.report_and_next("U1", report("U1", "NotNow", "A"), at(5))
    assert out.status == "not_now" and nxt.command_uuid == "B"
    out, nxt = q.report_and_next("U1", report("U1", "Error", "B"), at(6))
    assert out.status == "error" and nxt is None
    _, nxt = q.report_and_next("U1", report("U1", "Idle"), at(7))
    assert nxt.command_uuid == "A"


def test_last_seen_is_written_once_a_minute_whatever_the_device_reports(stores):
    """Every report shows the device alive, but last_seen_at is written at most once per
    seen_every (60 s) per device: the acknowledgement right after its Idle writes nothing more."""
    from sqlalchemy import select

    from app.db.models import Device

    def last_seen():
        with stores.engine.connect() as c:
            v = c.execute(select(Device.last_seen_at).where(Device.udid == "U1")).scalar()
        return v if v.tzinfo else v.replace(tzinfo=dt.timezone.utc)

    enroll(stores, "U1")
    q = stores.queue
    q.report_and_next("U1", report("U1", "Idle"), at(2))
    assert last_seen() == at(2)
    q.enqueue(command_uuid="A", request_type="ProfileList", body=b"a", udids=["U1"], now=at(2.1))
    _, nxt = q.report_and_next("U1", report("U1", "Idle"), at(2.2))
    assert nxt.command_uuid == "A" and last_seen() == at(2)
    out, _ = q.report_and_next("U1", report("U1", "Acknowledged", "A"), at(2.5))
    assert out.status == "acknowledged" and last_seen() == at(2)
    q.enqueue(command_uuid="B", request_type="ProfileList", body=b"b", udids=["U1"], now=at(2.9))
    q.report_and_next("U1", report("U1", "Idle"), at(3))  # a minute after the last write
    assert last_seen() == at(3)
    q.report_and_next("U1", report("U1", "Acknowledged", "B"), at(4.5))
    assert last_seen() == at(4.5)


def test_queue_refuses_reports_for_commands_never_sent(stores):
    enroll(stores, "U1")
    enroll(stores, "U2")
    q = stores.queue
    q.enqueue(command_uuid="A", request_type="ProfileList", body=b"a", udids=["U1", "U2"], now=at(0))
    with pytest.raises(UnknownCommand):
        q.report_and_next("U1", report("U1", "Acknowledged", "A"), at(1))  # queued, not sent
    with pytest.raises(UnknownCommand):
        q.report_and_next("U1", report("U1", "Acknowledged", "ZZZ"), at(1))
    q.report_and_next("U1", report("U1", "Idle"), at(1))
    with pytest.raises(UnknownCommand):
        q.report_and_next("U2", report("U2", "Acknowledged", "B"), at(2))


def test_queue_duplicate_report_changes_nothing(stores):
    enroll(stores, "U1")
    q = stores.queue
    q.enqueue(command_uuid="A", request_type="ProfileList", body=b"a", udids=["U1"], now=at(0))
    q.report_and_next("U1", report("U1", "Idle"), at(1))
    out, _ = q.report_and_next("U1", report("U1", "Acknowledged", "A"), at(2))
    assert not out.duplicate
    out, _ = q.report_and_next("U1", report("U1", "Error", "A"), at(3))
    assert out.duplicate and out.status == "acknowledged"


def test_expired_commands_are_skipped_after_an_idle_and_after_a_report(stores):
    """Whichever way the backend takes a step (PostgreSQL: one statement; expired commands on the
    general path), an expired command is marked expired and the next live one is sent, and the
    history shows each command's fate once."""
    from sqlalchemy import select

    from app.db.models import CommandEvent

    enroll(stores, "U1")
    q = stores.queue

    def put(cu: str, minutes: float, expires: float | None = None) -> None:
        q.enqueue(command_uuid=cu, request_type="ProfileList", body=cu.encode(), udids=["U1"], now=at(minutes),
                  expires_at=None if expires is None else at(expires))

    put("X", 0)
    put("A", 0.1, expires=1)
    put("B", 0.2)
    _, nxt = q.report_and_next("U1", report("U1", "Idle"), at(2))
    assert nxt.command_uuid == "X"
    _, nxt = q.report_and_next("U1", report("U1", "Acknowledged", "X"), at(3))  # A expired on the way
    assert nxt.command_uuid == "B" and nxt.body == b"B"
    put("D", 3.5, expires=4)
    _, nxt = q.report_and_next("U1", report("U1", "Acknowledged", "B"), at(5))  # only an expired one left
    assert nxt is None
    put("E", 6, expires=7)
    put("F", 6.1)
    _, nxt = q.report_and_next("U1", report("U1", "Idle"), at(8))
    assert nxt.command_uuid == "F"
    put("G", 8.5, expires=9)
    _, nxt = q.report_and_next("U1", report("U1", "Idle"), at(10))
    assert nxt.command_uuid == "F"  # sent, never answered: sent again (before G, which has expired by now)
    _, nxt = q.report_and_next("U1", report("U1", "Acknowledged", "F"), at(11))
    assert nxt is None
    with stores.engine.connect() as c:
        rows = c.execute(select(CommandEvent.command_uuid, CommandEvent.status)
                         .where(CommandEvent.udid == "U1").order_by(CommandEvent.id)).all()
    assert [tuple(r) for r in rows] == [
        ("X", "sent"), ("X", "acknowledged"), ("A", "expired"), ("B", "sent"), ("B", "acknowledged"),
        ("D", "expired"), ("E", "expired"), ("F", "sent"), ("F", "sent"), ("F", "acknowledged"), ("G", "expired")]
    assert q_statuses(stores) == {
        "X": "acknowledged", "A": "expired", "B": "acknowledged", "D": "expired", "E": "expired",
        "F": "acknowledged", "G": "expired"}


def q_statuses(stores) -> dict[str, str]:
    from sqlalchemy import select

    from app.db.models import QueueItem

    with stores.engine.connect() as c:
        return dict(c.execute(select(QueueItem.command_uuid, QueueItem.status).where(QueueItem.udid == "U1")).all())


def test_queue_cancel_only_touches_unsent(stores):
    enroll(stores, "U1")
    enroll(stores, "U2")
    q = stores.queue
    q.enqueue(command_uuid="A", request_type="ProfileList", body=b"a", udids=["U1", "U2"], now=at(0))
    q.report_and_next("U1", report("U1", "Idle"), at(1))  # sent to U1
    assert q.cancel(None, "A", at(2)) == 1
    _, nxt = q.report_and_next("U2", report("U2", "Idle"), at(3))
    assert nxt is None


def test_queue_bulk_enqueue(stores):
    from sqlalchemy import insert

    from app.db.models import Device

    udids = [f"U{i:05d}" for i in range(12_000)]
    with stores.sessions.begin() as s:
        s.execute(insert(Device), [{"udid": u, "school_id": "s1", "enrollment_state": "enrolled", "created_at": T0}
                                   for u in udids])
    n = stores.queue.enqueue(command_uuid="BULK", request_type="ProfileList", body=b"x", udids=udids, now=at(0))
    assert n == 12_000
    assert stores.devices.command_status("BULK")["counts"] == {"queued": 12_000}
    _, nxt = stores.queue.report_and_next("U11999", report("U11999", "Idle"), at(1))
    assert nxt.command_uuid == "BULK"
    assert stores.devices.command_status("BULK")["counts"] == {"queued": 11_999, "sent": 1}


def test_queue_enqueue_for_unknown_device_writes_nothing(stores):
    enroll(stores, "U1")
    with pytest.raises(Exception):
        stores.queue.enqueue(command_uuid="X", request_type="ProfileList", body=b"x", udids=["U1", "GHOST"],
                             now=at(0))
    _, nxt = stores.queue.report_and_next("U1", report("U1", "Idle"), at(1))
    assert nxt is None  # the whole enqueue was rolled back


def _fleet(c):
    """s1: pupils P1-P3 (P3 unenrolled), teacher T1 (has profile "wifi" v1), pending N1; s2: pupil O1."""
    from sqlalchemy import insert, update

    from app.db.models import Device, DeviceProfile

    c.schools.upsert("s2", "School Two", "x", T0)
    for u in ("P1", "P2", "P3", "T1", "O1"):
        enroll(c, u)
    c.checkin_store.checkout("P3", at(1))
    with c.sessions.begin() as s:
        s.execute(update(Device).where(Device.udid == "T1").values(role="teacher"))
        s.execute(update(Device).where(Device.udid == "O1").values(school_id="s2"))
        s.execute(insert(Device).values(udid="N1", school_id="s1", enrollment_state="pending", created_at=T0))
        s.execute(insert(DeviceProfile).values(udid="T1", identifier="wifi", content_hash="v1",
                                               source="acknowledged", updated_at=T0))


def _queued(c, cu):
    from sqlalchemy import select

    from app.db.models import QueueItem

    with c.sessions.begin() as s:
        return sorted(s.execute(select(QueueItem.udid).where(QueueItem.command_uuid == cu,
                                                             QueueItem.status == "queued")).scalars())


def _pushes(c):
    from sqlalchemy import select

    from app.db.models import PushRequest

    with c.sessions.begin() as s:
        return sorted(s.execute(select(PushRequest.udid)).scalars())


@pytest.mark.parametrize("selection, expected", [
    ({"school_id": "s1"}, ["P1", "P2", "T1"]),
    ({"school_id": "s1", "role": "pupil"}, ["P1", "P2"]),
    ({"school_id": "s1", "role": "teacher"}, ["T1"]),
    ({}, ["O1", "P1", "P2", "T1"]),
    ({"udids": ("P1", "P3", "N1", "O1", "P1")}, ["O1", "P1"]),
    ({"school_id": "s1", "lacking": ("wifi", "v1")}, ["P1", "P2"]),
    ({"school_id": "s1", "lacking": ("wifi", "v2")}, ["P1", "P2", "T1"]),
    ({"school_id": "s2", "role": "teacher"}, []),
])
def test_queue_enqueue_selected_queues_exactly_the_selected_enrolled_devices(stores, selection, expected):
    from app.storage.interfaces import DeviceSelection

    _fleet(stores)
    job = {"id": "J1", "kind": "command", "request_type": "ProfileList", "target": "t", "school_id": None,
           "created_by": "test", "created_at": at(2), "expires_at": None}
    n = stores.queue.enqueue_selected(DeviceSelection(**selection), command_uuid="SEL", request_type="ProfileList",
                                      body=b"x", now=at(2), job=job, created_by="test")
    assert n == len(expected)
    assert _queued(stores, "SEL") == expected
    assert _pushes(stores) == expected  # one push request per queued device, no other
    assert stores.jobs.get("J1")["total"] == len(expected)


def test_queue_enqueue_selected_without_devices_or_job_writes_nothing(stores):
    from sqlalchemy import func, select

    from app.db.models import Command
    from app.storage.interfaces import DeviceSelection

    _fleet(stores)
    assert stores.queue.enqueue_selected(DeviceSelection(school_id="s2", role="teacher"), command_uuid="NONE",
                                         request_type="ProfileList", body=b"x", now=at(2)) == 0
    with stores.sessions.begin() as s:
        assert s.execute(select(func.count()).select_from(Command)).scalar_one() == 0


def test_queue_enqueue_selected_long_udid_list_is_chunked(stores):
    from sqlalchemy import insert

    from app.db.models import Device
    from app.storage.interfaces import DeviceSelection

    udids = tuple(f"U{i:05d}" for i in range(40_000))  # more than one statement's parameters on SQLite
    with stores.sessions.begin() as s:
        s.execute(insert(Device), [{"udid": u, "school_id": "s1", "enrollment_state": "enrolled", "created_at": T0}
                                   for u in udids])
    n = stores.queue.enqueue_selected(DeviceSelection(udids=udids + udids[:5]), command_uuid="LONG",
                                      request_type="ProfileList", body=b"x", now=at(0), push=False)
    assert n == 40_000
    assert stores.devices.command_status("LONG")["counts"] == {"queued": 40_000}
    assert _pushes(stores) == []


@pytest.mark.parametrize("fails_at", ["job", "push"])
def test_queue_enqueue_selected_failing_midway_leaves_nothing(stores, monkeypatch, fails_at):
    from sqlalchemy import func, insert, select

    from app.db.models import Command, Job, QueueItem
    from app.storage import sql_enqueue
    from app.storage.interfaces import DeviceSelection

    _fleet(stores)
    job = {"id": "J1", "kind": "command", "request_type": "ProfileList", "target": "t", "school_id": None,
           "created_by": "test", "created_at": at(2), "expires_at": None}
    if fails_at == "job":  # the job row (written after the queue rows) collides
        with stores.sessions.begin() as s:
            s.execute(insert(Job).values(total=0, **job))
    else:  # the push outbox (written last) fails
        def broken(*a, **kw):
            raise RuntimeError("outbox down")
        monkeypatch.setattr(sql_enqueue, "request_selected", broken)
    with pytest.raises(Exception):
        stores.queue.enqueue_selected(DeviceSelection(school_id="s1"), command_uuid="HALF",
                                      request_type="ProfileList", body=b"x", now=at(2), job=job)
    with stores.sessions.begin() as s:
        assert s.execute(select(func.count()).select_from(QueueItem)).scalar_one() == 0
        assert s.execute(select(func.count()).select_from(Command)).scalar_one() == 0
        assert s.execute(select(Job.total)).scalars().all() == ([0] if fails_at == "job" else [])
    assert _pushes(stores) == []
    _, nxt = stores.queue.report_and_next("P1", report("P1", "Idle"), at(3))
    assert nxt is None


def test_push_queue_coalesces_claims_and_retries(stores):
    for u in ("U1", "U2", "U3"):
        enroll(stores, u)
    p = stores.push_queue
    assert p.request(["U1", "U2", "U1"], at(0)) == 2  # coalesced per device
    assert p.request(["U3"], at(0)) == 1
    claimed = p.claim(10, at(0))
    assert sorted(c[0] for c in claimed) == ["U1", "U2", "U3"]
    assert claimed[0][1] == b"\x01" * 32 and claimed[0][3] == TOPIC
    assert p.claim(10, at(0)) == []  # leased
    p.record_results([("U1", True, False, "ok"), ("U2", False, True, "410 Unregistered"),
                      ("U3", False, False, "503")], at(0.01))
    assert p.claim(10, at(0.02)) == []  # U3 backs off (seconds), U1 done, U2 unregistered
    again = p.claim(10, at(10))
    assert [c[0] for c in again] == ["U3"]
    # U2's token is now invalid: further requests for it are dropped at claim time
    p.request(["U2"], at(11))
    assert "U2" not in [c[0] for c in p.claim(10, at(11))]


def test_challenges_are_one_time_and_expire(stores):
    ch = stores.challenges
    ch.create("h1", "s1", "SERIAL", at(0), at(60))
    assert ch.consume("h1", at(1)) == ("s1", "SERIAL")
    assert ch.consume("h1", at(2)) is None
    ch.create("h2", "s1", None, at(0), at(60))
    assert ch.consume("h2", at(61)) is None
    assert ch.consume("nope", at(1)) is None


def test_certificate_store(stores):
    c = stores.certs
    c.record_issued(fingerprint="f1", serial_number="01", subject="CN=x", school_id="s1",
                    issued_at=at(0), not_after=at(60 * 24 * 365), udid=None)
    assert c.lookup("f1")["school_id"] == "s1" and c.lookup("f1")["revoked_at"] is None
    assert c.lookup("f1")["not_after"] == at(60 * 24 * 365)
    assert c.lookup("nope") is None
    enroll(stores, "U1", "f1")
    assert c.lookup("f1")["udid"] == "U1"
    assert c.revoke_for_device("U1", "checked out", at(5)) == 1
    assert c.lookup("f1")["revoked_at"] is not None
