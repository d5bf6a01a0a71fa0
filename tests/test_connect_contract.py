"""The command/report loop on /mdm/connect, with report fixtures shaped like iPad messages."""

from __future__ import annotations

import datetime as dt
import uuid

from app.services.commands import Target
from mdm import plist
from mdm.commands import new_command
from mdm.errors import Unavailable
from tests.support.fixtures import fixture, snapshot

CONNECT = {"Content-Type": "application/x-apple-aspen-mdm"}


def send(dev, name: str, command_uuid: str = ""):
    body = fixture("connect", name, udid=dev.udid, serial=dev.serial, command_uuid=command_uuid)
    return dev.http.put("/mdm/connect", content=body, headers=dev.headers(body, CONNECT["Content-Type"]))


def queue(container, dev, request_type: str, params=None, **kw):
    return container.commands.enqueue(new_command(request_type, params), Target(udids=(dev.udid,)), **kw)


def test_idle_with_empty_queue_is_empty_200(enrolled):
    r = send(enrolled, "Idle")
    assert r.status_code == 200 and r.content == b""


def test_device_information_round_trip_stores_inventory(enrolled, container):
    q = queue(container, enrolled, "DeviceInformation")
    r = send(enrolled, "Idle")
    cu, cmd = enrolled.command_of(r)
    assert cu == q.command_uuid and cmd["RequestType"] == "DeviceInformation" and "Queries" in cmd
    r = send(enrolled, "Acknowledged-DeviceInformation", cu)
    assert r.status_code == 200 and r.content == b""
    d = container.devices.get(enrolled.udid)
    assert d["inventory"]["ProductName"] == "iPad13,18" and d["name"] == "GS-Nord-017"
    hist = d["commands"][0]["history"]
    assert [h["status"] for h in hist] == ["queued", "sent", "acknowledged"]
    assert all(h["at"] for h in hist)


def test_profile_list_replaces_known_profiles(enrolled, container):
    q = queue(container, enrolled, "ProfileList")
    send(enrolled, "Idle")
    send(enrolled, "Acknowledged-ProfileList", q.command_uuid)
    d = container.devices.get(enrolled.udid)
    assert [p["identifier"] for p in d["profiles"]] == ["org.schoolmdm.gs-nord.wifi"]


def test_error_report_keeps_error_chain(enrolled, container):
    q = queue(container, enrolled, "ProfileList")
    send(enrolled, "Idle")
    send(enrolled, "Error", q.command_uuid)
    c = container.devices.get(enrolled.udid)["commands"][0]
    assert c["status"] == "error" and c["error_chain"][0]["ErrorCode"] == 4001
    assert container.devices.command_status(q.command_uuid)["counts"] == {"error": 1}


def test_command_format_error_is_recorded(enrolled, container):
    q = queue(container, enrolled, "SecurityInfo")
    send(enrolled, "Idle")
    send(enrolled, "CommandFormatError", q.command_uuid)
    assert container.devices.get(enrolled.udid)["commands"][0]["status"] == "format_error"


def test_not_now_comes_back_on_a_later_connect_not_the_same(enrolled, container):
    a = queue(container, enrolled, "ProfileList")
    b = queue(container, enrolled, "SecurityInfo")
    cu, _ = enrolled.command_of(send(enrolled, "Idle"))
    assert cu == a.command_uuid
    r = send(enrolled, "NotNow", a.command_uuid)
    cu2, _ = enrolled.command_of(r)
    assert cu2 == b.command_uuid  # not A again in the same connect
    r = send(enrolled, "Acknowledged", b.command_uuid)
    assert r.content == b""  # A waits for the next connect
    cu3, _ = enrolled.command_of(send(enrolled, "Idle"))
    assert cu3 == a.command_uuid
    send(enrolled, "Acknowledged", a.command_uuid)
    statuses = [h["status"] for h in container.devices.get(enrolled.udid)["commands"][1]["history"]]
    assert statuses == ["queued", "sent", "not_now", "sent", "acknowledged"]


def test_priority_then_fifo(enrolled, container):
    first = queue(container, enrolled, "ProfileList")
    second = queue(container, enrolled, "SecurityInfo")
    urgent = queue(container, enrolled, "DeviceLock", {"Message": "Bitte im Sekretariat melden"}, priority=10)
    order = []
    r = send(enrolled, "Idle")
    while r.content:
        cu, _ = enrolled.command_of(r)
        order.append(cu)
        r = send(enrolled, "Acknowledged", cu)
    assert order == [urgent.command_uuid, first.command_uuid, second.command_uuid]


def test_report_for_unknown_command_is_400_and_changes_nothing(enrolled, container):
    queue(container, enrolled, "ProfileList")  # queued but not sent
    before = snapshot(container.engine)
    r = send(enrolled, "Acknowledged", str(uuid.uuid4()).upper())
    assert r.status_code == 400 and r.json()["error"]["code"] == "unknown_command"
    assert snapshot(container.engine) == before


def test_report_for_a_queued_but_unsent_command_is_400(enrolled, container):
    q = queue(container, enrolled, "ProfileList")
    before = snapshot(container.engine)
    r = send(enrolled, "Acknowledged", q.command_uuid)
    assert r.status_code == 400
    assert snapshot(container.engine) == before


def test_report_for_another_devices_command_is_400(client, school, container):
    from tests.support.device import TestDevice

    a = TestDevice(client).enroll(school["id"], school["token"])
    b = TestDevice(client).enroll(school["id"], school["token"])
    q = queue(container, a, "ProfileList")
    send(a, "Idle")
    before = snapshot(container.engine)
    assert send(b, "Acknowledged", q.command_uuid).status_code == 400
    assert snapshot(container.engine) == before


def test_repeated_report_is_recorded_once(enrolled, container):
    q = queue(container, enrolled, "ProfileList")
    send(enrolled, "Idle")
    assert send(enrolled, "Acknowledged-ProfileList", q.command_uuid).status_code == 200
    before = snapshot(container.engine)
    assert send(enrolled, "Acknowledged-ProfileList", q.command_uuid).status_code == 200
    after = snapshot(container.engine)
    assert after["command_queue"] == before["command_queue"] and after["command_events"] == before["command_events"]


def test_sent_command_without_report_is_resent_on_next_idle(enrolled, container):
    q = queue(container, enrolled, "ProfileList")
    cu, _ = enrolled.command_of(send(enrolled, "Idle"))
    # the reply was lost: the device comes back with Idle
    cu2, _ = enrolled.command_of(send(enrolled, "Idle"))
    assert cu == cu2 == q.command_uuid
    send(enrolled, "Acknowledged", cu)
    c = container.devices.get(enrolled.udid)["commands"][0]
    assert c["status"] == "acknowledged" and c["sent_count"] == 2


def test_expired_command_is_not_sent(enrolled, container):
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1)
    queue(container, enrolled, "ProfileList", expires_at=past)
    assert send(enrolled, "Idle").content == b""
    assert container.devices.get(enrolled.udid)["commands"][0]["status"] == "expired"


def test_command_plist_is_what_apple_documents(enrolled, container):
    q = queue(container, enrolled, "DeviceLock", {"Message": "Lost iPad", "PhoneNumber": "+49 30 1234"})
    body = send(enrolled, "Idle").content
    d = plist.loads(body)
    assert d == {"CommandUUID": q.command_uuid,
                 "Command": {"RequestType": "DeviceLock", "Message": "Lost iPad", "PhoneNumber": "+49 30 1234"}}


def test_acknowledged_erase_unenrolls_and_revokes(enrolled, container):
    q = queue(container, enrolled, "EraseDevice")
    later = queue(container, enrolled, "ProfileList")
    cu, _ = enrolled.command_of(send(enrolled, "Idle"))
    assert cu == q.command_uuid
    r = send(enrolled, "Acknowledged", cu)
    assert r.status_code == 200 and r.content == b""  # nothing more for a device that is wiping itself
    d = container.devices.get(enrolled.udid)
    assert d["enrollment_state"] == "unenrolled" and d["enrollment_history"][0]["event"] == "Erased"
    assert {c["command_uuid"]: c["status"] for c in d["commands"]}[later.command_uuid] == "cancelled"
    from mdm.pki import fingerprint

    assert container.certs.lookup(fingerprint(enrolled.cert))["revoked_at"] is not None
    assert send(enrolled, "Idle").status_code in (401, 403)


def _failing_inventory_write(container, monkeypatch):
    """Make saving DeviceInformation's answer fail as an outage would, where it is written: on
    SQLite in ``save_device_information`` (inside the report's transaction); on PostgreSQL inside
    the one statement that records the report (``sql_queue_pg``), by a trigger. Returns the undo."""
    from sqlalchemy import text

    if container.engine.dialect.name != "postgresql":
        inventory = container.inventory
        real = inventory.save_device_information

        def saves_then_fails(*a, **kw):
            real(*a, **kw)
            raise Unavailable("database unavailable, retry later")

        monkeypatch.setattr(inventory, "save_device_information", saves_then_fails)
        return lambda: monkeypatch.setattr(inventory, "save_device_information", real)
    with container.engine.begin() as c:
        c.execute(text("CREATE FUNCTION test_lose_connection() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                       "RAISE EXCEPTION 'connection lost while writing' USING ERRCODE = '08006'; END $$"))
        c.execute(text("CREATE TRIGGER test_lose_connection BEFORE UPDATE OF inventory ON devices "
                       "FOR EACH ROW EXECUTE FUNCTION test_lose_connection()"))

    def undo():
        with container.engine.begin() as c:
            c.execute(text("DROP TRIGGER test_lose_connection ON devices"))
            c.execute(text("DROP FUNCTION test_lose_connection()"))
    return undo


def test_a_result_and_its_report_commit_together(enrolled, container, monkeypatch):
    """DeviceInformation's answer is saved with the report: when saving fails, the report is not
    recorded either, and the device's retry records both."""
    q = queue(container, enrolled, "DeviceInformation")
    after = queue(container, enrolled, "ProfileList")
    cu, _ = enrolled.command_of(send(enrolled, "Idle"))
    undo = _failing_inventory_write(container, monkeypatch)
    try:
        before = snapshot(container.engine)
        assert send(enrolled, "Acknowledged-DeviceInformation", cu).status_code == 503
        assert snapshot(container.engine) == before  # neither the report nor the inventory nor the next command
    finally:
        undo()
    trips = _count_round_trips(monkeypatch) if container.engine.dialect.name == "postgresql" else None
    r = send(enrolled, "Acknowledged-DeviceInformation", cu)
    assert r.status_code == 200 and enrolled.command_of(r)[0] == after.command_uuid
    if trips is not None:  # the device-auth read and the one statement; no transaction round trips
        assert trips == {"execute": 2, "commit": 0}
    monkeypatch.undo()
    d = container.devices.get(enrolled.udid)
    assert d["inventory"]["ProductName"] == "iPad13,18" and d["name"] == "GS-Nord-017"
    statuses = {c["command_uuid"]: [h["status"] for h in c["history"]] for c in d["commands"]}
    assert statuses[cu] == ["queued", "sent", "acknowledged"] and statuses[after.command_uuid] == ["queued", "sent"]
    assert q.command_uuid == cu

def _count_round_trips(monkeypatch) -> dict:
    """Statements and COMMITs sent on PostgreSQL (psycopg's cursor and connection)."""
    import psycopg

    seen = {"execute": 0, "commit": 0}
    execute, commit = psycopg.Cursor.execute, psycopg.Connection.commit

    def counting_execute(self, *a, **kw):
        seen["execute"] += 1
        return execute(self, *a, **kw)

    def counting_commit(self):
        seen["commit"] += 1
        return commit(self)

    monkeypatch.setattr(psycopg.Cursor, "execute", counting_execute)
    monkeypatch.setattr(psycopg.Connection, "commit", counting_commit)
    return seen


def test_acknowledged_install_profile_records_the_installed_version_and_hands_out_the_next(
        enrolled, container, monkeypatch):
    """An InstallProfile's acknowledgement records the profile version now on the device, and the
    same reply carries the next command. On PostgreSQL the queue does all of it in the one
    statement that records the report (``sql_queue_pg``): the request's only other statement is
    the device-auth read, and there is no COMMIT round trip (autocommit)."""
    payload = {"PayloadType": "Configuration", "PayloadVersion": 1, "PayloadDisplayName": "Dock",
               "PayloadIdentifier": "org.schoolmdm.gs-nord.dock", "PayloadUUID": str(uuid.uuid4()).upper(),
               "PayloadContent": []}
    p = container.profiles.store(school_id="gs-nord", role=None, name="dock", payload=payload)
    pushed = container.profiles.push(p.id, Target(udids=(enrolled.udid,)))
    after = queue(container, enrolled, "ProfileList")
    cu, cmd = enrolled.command_of(send(enrolled, "Idle"))
    assert cu == pushed.command_uuid and cmd["RequestType"] == "InstallProfile"
    assert container.devices.get(enrolled.udid)["profiles"] == []

    postgres = container.engine.dialect.name == "postgresql"
    trips = _count_round_trips(monkeypatch) if postgres else None
    r = send(enrolled, "Acknowledged", cu)
    assert r.status_code == 200 and enrolled.command_of(r)[0] == after.command_uuid
    if postgres:
        assert trips == {"execute": 2, "commit": 0}
    monkeypatch.undo()

    (installed,) = container.devices.get(enrolled.udid)["profiles"]
    assert installed["identifier"] == p.identifier and installed["content_hash"] == p.content_hash
    assert installed["source"] == "acknowledged"
    statuses = {c["command_uuid"]: [h["status"] for h in c["history"]] for c in container.devices.get(enrolled.udid)["commands"]}
    assert statuses[cu] == ["queued", "sent", "acknowledged"]
    assert statuses[after.command_uuid] == ["queued", "sent"]
    # a repeated acknowledgement changes nothing and is answered (the next command is out already)
    before = snapshot(container.engine)
    assert send(enrolled, "Acknowledged", cu).status_code == 200
    assert snapshot(container.engine) == before
