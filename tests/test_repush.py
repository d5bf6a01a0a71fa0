"""Nothing stuck: a device with pending commands that did not come back after its push is pushed again,
with a growing interval."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import update

from app.db.models import Device, PushRequest
from app.services.clock import FixedClock
from app.services.commands import Target
from app.services.scheduler import RepushStale
from mdm.commands import new_command
from tests.support.device import TestDevice


def outbox(container) -> set[str]:
    with container.sessions() as s:
        return {r.udid for r in s.query(PushRequest)}


def test_repush_with_backoff(client, school, container):
    quiet = TestDevice(client).enroll(school["id"], school["token"])
    busy = TestDevice(client).enroll(school["id"], school["token"])
    container.commands.enqueue(new_command("ProfileList"), Target(udids=(quiet.udid, busy.udid)))
    t0 = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1)
    claimed = container.push_queue.claim(10, t0)
    assert {c[0] for c in claimed} == {quiet.udid, busy.udid}
    pushed = dt.datetime.now(dt.timezone.utc)
    container.push_queue.record_results([(u, True, False, "ok") for u, *_ in claimed], pushed)
    busy.connect("Idle")  # came back (and has the command now, still pending until it reports)
    clock = FixedClock(pushed + dt.timedelta(seconds=30))
    r = RepushStale(container.sessions, container.push_queue, after=dt.timedelta(seconds=120), clock=clock)
    assert r.run_once() == 0  # too early
    clock.advance(seconds=120)
    assert r.run_once() == 1 and outbox(container) == {quiet.udid}  # only the one that did not come back
    # the re-push is sent; the device stays away: next time it waits longer (the command has waited longer)
    for u, *_ in container.push_queue.claim(10, clock()):
        container.push_queue.record_results([(u, True, False, "ok")], clock())
    clock.advance(seconds=130)
    assert r.run_once() == 0  # not before it has waited as long as the command had (150 s)
    clock.advance(seconds=60)
    assert r.run_once() == 1


def _came_back(container, udids, at):
    with container.sessions.begin() as s:
        s.execute(update(Device).where(Device.udid.in_(udids)).values(last_seen_at=at))


def _push_all(container, devices):
    container.commands.enqueue(new_command("ProfileList"), Target(udids=tuple(d.udid for d in devices)))
    claimed = container.push_queue.claim(50, dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1))
    pushed = dt.datetime.now(dt.timezone.utc)
    container.push_queue.record_results([(u, True, False, "ok") for u, *_ in claimed], pushed)
    return pushed


def test_no_repush_while_the_wave_is_still_being_answered(client, school, container):
    """Ten devices pushed at once; three of that wave came back recently, seven not yet: the seven
    are queued behind the wave, not lost; once nobody from the wave has come back for ``after``,
    they are pushed again."""
    devices = [TestDevice(client).enroll(school["id"], school["token"]) for _ in range(10)]
    pushed = _push_all(container, devices)
    back = [d.udid for d in devices[:3]]
    clock = FixedClock(pushed + dt.timedelta(seconds=150))
    _came_back(container, back, clock() - dt.timedelta(seconds=20))
    r = RepushStale(container.sessions, container.push_queue, after=dt.timedelta(seconds=120), clock=clock)
    assert r.run_once() == 0
    clock.advance(seconds=110)  # the three came back 130 s ago: longer than ``after``
    assert r.run_once() == 7 and outbox(container) == {d.udid for d in devices[3:]}


def test_repush_when_overtaken_by_a_later_push(client, school, container):
    """Devices keep coming back, but ones pushed well after this one: it was overtaken, so its push
    is taken for lost (a busy school day, not a storm)."""
    old = [TestDevice(client).enroll(school["id"], school["token"]) for _ in range(2)]
    first = _push_all(container, old)
    later = [TestDevice(client).enroll(school["id"], school["token"]) for _ in range(2)]
    clock = FixedClock(first + dt.timedelta(seconds=200))
    second = _push_all(container, later)
    with container.sessions.begin() as s:  # the later wave was pushed 180 s after the first one
        s.execute(update(Device).where(Device.udid.in_([d.udid for d in later]))
                  .values(last_push_at=first + dt.timedelta(seconds=180)))
    assert second
    _came_back(container, [d.udid for d in later], clock() - dt.timedelta(seconds=5))
    r = RepushStale(container.sessions, container.push_queue, after=dt.timedelta(seconds=120), clock=clock)
    assert r.run_once() == 2 and outbox(container) == {d.udid for d in old}


def test_repush_when_nobody_comes_back(client, school, container):
    """No device came back after the push: the pushes were lost, not queued; re-push after ``after``."""
    devices = [TestDevice(client).enroll(school["id"], school["token"]) for _ in range(3)]
    pushed = _push_all(container, devices)
    clock = FixedClock(pushed + dt.timedelta(seconds=121))
    r = RepushStale(container.sessions, container.push_queue, after=dt.timedelta(seconds=120), clock=clock)
    assert r.run_once() == 3
