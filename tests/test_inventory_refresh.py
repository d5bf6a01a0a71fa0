"""Scheduled inventory refresh: state is never older than the configured age."""

from __future__ import annotations

import datetime as dt

from app.services.clock import FixedClock
from app.services.scheduler import InventoryRefresh
from tests.support.device import TestDevice


def test_stale_devices_get_inventory_commands_once(client, school, container):
    devs = [TestDevice(client).enroll(school["id"], school["token"]) for _ in range(3)]
    clock = FixedClock(dt.datetime.now(dt.timezone.utc))
    refresh = InventoryRefresh(container.sessions, container.commands, max_age=dt.timedelta(hours=6), clock=clock)
    assert refresh.run_once() == 3  # never inventoried
    assert refresh.run_once() == 0  # already pending: not queued twice
    d = devs[0]
    seen = []
    r = d.connect("Idle")
    while r.content:
        cu, cmd = d.command_of(r)
        seen.append(cmd["RequestType"])
        extra = {"QueryResponses": {"DeviceName": "iPad-1", "OSVersion": "17.5.1"}} \
            if cmd["RequestType"] == "DeviceInformation" else {}
        r = d.connect("Acknowledged", cu, **extra)
    assert sorted(seen) == ["DeviceInformation", "InstalledApplicationList", "ProfileList"]
    assert container.devices.get(d.udid)["inventory"]["DeviceName"] == "iPad-1"
    clock.advance(hours=1)
    assert refresh.run_once() == 0  # fresh for 6 hours; the other two still have theirs pending
    clock.advance(hours=6)
    assert refresh.run_once() == 1  # d is stale again


def test_concurrent_rounds_queue_once(client, school, container):
    """Several workers run the schedule at once: each stale device gets one set of inventory commands."""
    import threading

    devs = [TestDevice(client).enroll(school["id"], school["token"]) for _ in range(6)]
    refreshers = [InventoryRefresh(container.sessions, container.commands, max_age=dt.timedelta(hours=6))
                  for _ in range(4)]
    barrier = threading.Barrier(len(refreshers))
    results = []

    def run(r):
        barrier.wait()
        results.append(r.run_once())

    threads = [threading.Thread(target=run, args=(r,)) for r in refreshers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(results) == len(devs)
    for d in devs:
        kinds = sorted(c["request_type"] for c in container.devices.get(d.udid)["commands"])
        assert kinds == ["DeviceInformation", "InstalledApplicationList", "ProfileList"]
