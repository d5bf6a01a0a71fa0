"""The minimal technician surface as JSON API under /api/v1 with bearer tokens."""

from __future__ import annotations

from tests.support.device import TestDevice


def test_requires_a_bearer_token(client):
    r = client.get("/api/v1/devices")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    r = client.get("/api/v1/devices", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401


def test_create_school_and_enroll_with_its_url(api, client, container):
    r = api.post("/api/v1/schools", json={"id": "gym-sued", "name": "Gymnasium Süd"})
    assert r.status_code == 201
    body = r.json()
    assert body["enroll_url"].endswith(f"/enroll/gym-sued?token={body['enroll_token']}")
    dev = TestDevice(client).enroll("gym-sued", body["enroll_token"])
    r = api.get("/api/v1/devices", params={"school": "gym-sued"})
    assert r.json()["total"] == 1 and r.json()["items"][0]["udid"] == dev.udid


def test_wrong_or_missing_enroll_token_is_403_with_reason(client, school):
    r = client.get(f"/enroll/{school['id']}")
    assert r.status_code == 403 and "token" in r.json()["error"]["message"]
    r = client.get(f"/enroll/{school['id']}", params={"token": "wrong"})
    assert r.status_code == 403 and "not valid" in r.json()["error"]["message"]
    r = client.get("/enroll/no-such-school", params={"token": school["token"]})
    assert r.status_code == 403


def test_queue_command_to_a_school_and_follow_it(api, client, school, container):
    devs = [TestDevice(client).enroll(school["id"], school["token"]) for _ in range(3)]
    r = api.post("/api/v1/commands", json={"request_type": "DeviceInformation", "school": school["id"]})
    assert r.status_code == 202 and r.json()["queued"] == 3
    cu = r.json()["command_uuid"]
    for d in devs:
        got, cmd = d.command_of(d.connect("Idle"))
        assert got == cu
        d.connect("Acknowledged", cu, QueryResponses={"DeviceName": f"iPad-{d.serial}", "OSVersion": "17.5.1"})
    st = api.get(f"/api/v1/commands/{cu}").json()
    assert st["counts"] == {"acknowledged": 3} and st["total"] == 3
    # the pushes were requested through the outbox
    from app.db.models import PushRequest

    with container.sessions() as s:
        assert s.query(PushRequest).count() == 3


def test_command_validation_errors_are_4xx(api, enrolled):
    r = api.post("/api/v1/commands", json={"request_type": "DeviceInformation"})
    assert r.status_code == 422
    r = api.post("/api/v1/commands", json={"request_type": "NoSuchCommand", "devices": [enrolled.udid]})
    assert r.status_code == 400 and r.json()["error"]["code"] == "unknown_message_type"
    r = api.post("/api/v1/commands", json={"request_type": "RemoveProfile", "devices": [enrolled.udid]})
    assert r.status_code == 422 and "Identifier" in r.json()["error"]["message"]
    r = api.post("/api/v1/commands", json={"request_type": "DeviceLock", "devices": ["NOPE"]})
    assert r.status_code == 404


def test_support_may_queue_only_safe_commands(api, client, container, enrolled):
    token = container.tokens.create("desk", "support", None, container.clock())
    h = {"Authorization": f"Bearer {token}"}
    ok = client.post("/api/v1/commands", headers=h, json={"request_type": "DeviceInformation",
                                                          "devices": [enrolled.udid]})
    assert ok.status_code == 202
    no = client.post("/api/v1/commands", headers=h, json={"request_type": "EraseDevice",
                                                          "devices": [enrolled.udid]})
    assert no.status_code == 403 and "support" in no.json()["error"]["message"]


def test_school_scoped_token_sees_only_its_school(api, client, container, school, enrolled):
    from app.services.enrollment import hash_secret

    container.schools.upsert("other", "Other School", hash_secret("t2"), container.clock())
    other = TestDevice(client).enroll("other", "t2")
    token = container.tokens.create("gs-tech", "technician", [school["id"]], container.clock())
    h = {"Authorization": f"Bearer {token}"}
    items = client.get("/api/v1/devices", headers=h).json()["items"]
    assert [d["udid"] for d in items] == [enrolled.udid]
    assert client.get(f"/api/v1/devices/{other.udid}", headers=h).status_code == 404
    r = client.post("/api/v1/commands", headers=h, json={"request_type": "DeviceLock", "school": "other"})
    assert r.status_code == 403
    r = client.post("/api/v1/commands", headers=h, json={"request_type": "DeviceLock", "devices": [other.udid]})
    assert r.status_code == 403


def test_search_by_serial_and_show(api, enrolled):
    r = api.get("/api/v1/devices", params={"q": enrolled.serial})
    assert [d["udid"] for d in r.json()["items"]] == [enrolled.udid]
    d = api.get(f"/api/v1/devices/{enrolled.serial}").json()
    assert d["udid"] == enrolled.udid and d["enrollment_state"] == "enrolled"
    assert api.get("/api/v1/devices/NOPE").status_code == 404


def test_health_ready_metrics(client, enrolled):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}
    m = client.get("/metrics").text
    assert 'schoolmdm_checkins_total{message_type="TokenUpdate",outcome="ok"} 1.0' in m


def test_device_filters_last_seen_and_commands(api, client, school, container):
    import datetime as dt

    a, b, c = (TestDevice(client).enroll(school["id"], school["token"]) for _ in range(3))
    r = api.post("/api/v1/commands", json={"request_type": "ProfileList", "devices": [a.udid, b.udid]}).json()
    b.connect("Idle")
    b.connect("Error", r["command_uuid"])
    pending = {d["udid"] for d in api.get("/api/v1/devices", params={"commands": "pending"}).json()["items"]}
    failed = {d["udid"] for d in api.get("/api/v1/devices", params={"commands": "failed"}).json()["items"]}
    assert pending == {a.udid} and failed == {b.udid}
    soon = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=1)).isoformat()
    assert api.get("/api/v1/devices", params={"seen_after": soon}).json()["total"] == 0
    assert api.get("/api/v1/devices", params={"seen_before": soon}).json()["total"] == 3
    assert api.get("/api/v1/devices", params={"commands": "weird"}).status_code == 422
