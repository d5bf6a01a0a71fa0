"""Retention prunes old finished command history and keeps what is pending or recent."""

from __future__ import annotations

import datetime as dt

import pytest

from app.services.clock import FixedClock
from app.services.commands import Target
from app.services.retention import Retention
from mdm.commands import new_command
from mdm.errors import NotFound
from tests.support.device import TestDevice


def test_prunes_old_finished_history_only(client, school, container):
    dev = TestDevice(client).enroll(school["id"], school["token"])
    old = container.jobs.submit(new_command("ProfileList"), Target(udids=(dev.udid,)), actor="t")
    cu = container.devices.get(dev.udid)["commands"][0]["command_uuid"]
    dev.connect("Idle")
    dev.connect("Acknowledged", cu, ProfileList=[])
    pending = container.commands.enqueue(new_command("SecurityInfo"), Target(udids=(dev.udid,)))
    later = FixedClock(dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=200))
    r = Retention(container.sessions, command_days=180, clock=later, batch=1)
    out = r.run_once()
    assert out["queue"] == 1 and out["commands"] == 1 and out["jobs"] == 1 and out["events"] >= 2
    cmds = container.devices.get(dev.udid)["commands"]
    assert [c["command_uuid"] for c in cmds] == [pending.command_uuid]  # the pending one stays
    assert r.run_once()["queue"] == 0
    with pytest.raises(NotFound):
        container.jobs.get(old["id"])
