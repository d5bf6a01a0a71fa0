"""Every check-in MessageType through the real HTTP app, from fixtures shaped like iPad messages."""

from __future__ import annotations

import pytest

from app.db.models import Device
from app.services.commands import Target
from tests.support.device import TestDevice
from tests.support.fixtures import fixture, snapshot


def values(dev: TestDevice) -> dict:
    return {"udid": dev.udid, "serial": dev.serial, "topic": dev.topic}


def test_authenticate_binds_certificate_and_clears_queue(client, school, container):
    dev = TestDevice(client)
    dev.fetch_profile(school["id"], school["token"])
    dev.scep()
    r = dev.checkin(fixture("checkin", "Authenticate", **values(dev)))
    assert r.status_code == 200
    d = container.devices.get(dev.udid)
    assert d["enrollment_state"] == "authenticated"
    assert d["serial"] == dev.serial and d["product_name"] == "iPad13,18" and d["os_version"] == "17.5.1"
    with container.sessions() as s:
        from mdm.pki import fingerprint

        assert s.get(Device, dev.udid).cert_fingerprint == fingerprint(dev.cert)
    # an authenticated (not yet enrolled) device cannot be sent commands
    r = dev.connect("Idle")
    assert r.status_code == 403


def test_authenticate_again_clears_pending_commands(enrolled, container):
    res = container.commands.enqueue_request("DeviceInformation", None, Target(udids=(enrolled.udid,)))
    assert res.count == 1
    r = enrolled.checkin(fixture("checkin", "Authenticate", **values(enrolled)))
    assert r.status_code == 200
    d = container.devices.get(enrolled.udid)
    assert [c["status"] for c in d["commands"]] == ["cancelled"]


def test_token_update_makes_device_pushable(client, school, container):
    dev = TestDevice(client)
    dev.fetch_profile(school["id"], school["token"])
    dev.scep()
    assert dev.checkin(dev.authenticate_body()).status_code == 200
    r = dev.checkin(fixture("checkin", "TokenUpdate", **values(dev)))
    assert r.status_code == 200
    d = container.devices.get(dev.udid)
    assert d["enrollment_state"] == "enrolled" and d["pushable"] is True
    with container.sessions() as s:
        row = s.get(Device, dev.udid)
        assert row.push_magic == "5D2BB6B8-8D2C-4C47-9B0F-2C1D0C3C9E1A"
        assert row.unlock_token == b"unlock-token-bytes"
        assert bytes.fromhex(row.push_token)[:4] == bytes.fromhex("abcdef01")
    assert [e["event"] for e in d["enrollment_history"]] == ["TokenUpdate", "Authenticate"]


def test_checkout_unenrolls_and_keeps_history(enrolled, container):
    r = enrolled.checkin(fixture("checkin", "CheckOut", **values(enrolled)))
    assert r.status_code == 200
    d = container.devices.get(enrolled.udid)
    assert d["enrollment_state"] == "unenrolled" and d["pushable"] is False
    assert [e["event"] for e in d["enrollment_history"]] == ["CheckOut", "TokenUpdate", "Authenticate"]
    # its certificate no longer opens anything
    assert enrolled.connect("Idle").status_code in (401, 403)


@pytest.mark.parametrize("message_type,status", [
    ("UserAuthenticate", 410),
    ("GetToken", 400),
    ("DeclarativeManagement", 400),
    ("SetBootstrapToken", 400),
    ("GetBootstrapToken", 400),
    ("MysteryMessage", 400),
])
def test_other_message_types_are_refused_clearly(enrolled, container, message_type, status):
    before = snapshot(container.engine)
    r = enrolled.checkin(fixture("checkin", message_type, **values(enrolled)))
    assert r.status_code == status
    err = r.json()["error"]
    assert message_type in err["message"]
    assert snapshot(container.engine) == before


def test_device_auth_reads_pending_commands_and_set_up_in_one_go(enrolled, container):
    """What the connect path learns with the device's record: commands waiting, set-up under way."""
    import datetime as dt

    from sqlalchemy import delete

    from app.db.models_ade import DeviceSetup

    store = container.device_auth.checkins
    a = store.device_auth(enrolled.udid)
    assert (a.enrollment_state, a.has_pending, a.setup_under_way) == ("enrolled", False, False)
    container.commands.enqueue_request("DeviceInformation", None, Target(udids=(enrolled.udid,)))
    assert store.device_auth(enrolled.udid).has_pending is True
    for state, under_way in (("configuring", True), ("failed", True), ("finishing", False), ("configured", False)):
        with container.sessions.begin() as s:
            s.execute(delete(DeviceSetup).where(DeviceSetup.udid == enrolled.udid))
            s.add(DeviceSetup(udid=enrolled.udid, state=state, started_at=dt.datetime.now(dt.timezone.utc)))
        assert store.device_auth(enrolled.udid).setup_under_way is under_way, state
    assert store.device_auth("no-such-device") is None
