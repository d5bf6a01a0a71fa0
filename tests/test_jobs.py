"""Bulk jobs: live counts, cancel what is still queued, retry the failed, audit log."""

from __future__ import annotations

from tests.support.device import TestDevice


def enroll_n(client, school, n):
    return [TestDevice(client).enroll(school["id"], school["token"]) for _ in range(n)]


def test_job_counts_follow_the_devices(api, client, school):
    devs = enroll_n(client, school, 4)
    r = api.post("/api/v1/commands", json={"request_type": "SecurityInfo", "school": school["id"]})
    job = r.json()["job"]
    assert job["total"] == 4 and job["counts"]["queued"] == 4 and job["state"] == "running"
    cu = r.json()["command_uuid"]
    for d in devs[:3]:
        d.connect("Idle")
    devs[0].connect("Acknowledged", cu)
    devs[1].connect("Error", cu, ErrorChain=[{"ErrorCode": 12021, "ErrorDomain": "MCMDMErrorDomain",
                                              "LocalizedDescription": "nope"}])
    devs[2].connect("NotNow", cu)
    j = api.get(f"/api/v1/jobs/{job['id']}").json()
    assert j["counts"] == {"queued": 1, "sent": 0, "acknowledged": 1, "error": 1, "not_now": 1,
                           "cancelled": 0, "expired": 0}
    errs = api.get(f"/api/v1/jobs/{job['id']}/devices", params={"status": "error"}).json()
    assert [e["udid"] for e in errs["items"]] == [devs[1].udid]
    assert errs["items"][0]["error_chain"][0]["ErrorCode"] == 12021
    listed = api.get("/api/v1/jobs").json()
    assert listed["items"][0]["id"] == job["id"]


def test_cancel_only_what_is_still_queued(api, client, school):
    devs = enroll_n(client, school, 3)
    r = api.post("/api/v1/commands", json={"request_type": "ProfileList", "school": school["id"]}).json()
    devs[0].connect("Idle")  # sent to the first
    j = api.post(f"/api/v1/jobs/{r['job']['id']}/cancel").json()
    assert j["cancelled_now"] == 2 and j["counts"]["cancelled"] == 2 and j["counts"]["sent"] == 1
    assert j["state"] == "cancelled"
    assert devs[1].connect("Idle").content == b""
    # the sent one can still report
    assert devs[0].connect("Acknowledged", r["command_uuid"]).status_code == 200


def test_retry_failed_devices_with_a_fresh_command(api, client, school):
    devs = enroll_n(client, school, 2)
    r = api.post("/api/v1/commands", json={"request_type": "ProfileList", "school": school["id"]}).json()
    for d in devs:
        d.connect("Idle")
    devs[0].connect("Acknowledged", r["command_uuid"])
    devs[1].connect("Error", r["command_uuid"])
    j = api.post(f"/api/v1/jobs/{r['job']['id']}/retry").json()
    assert j["retried"] == 1 and j["total"] == 2
    assert j["counts"]["error"] == 0 and j["counts"]["queued"] == 1
    got = devs[1].command_of(devs[1].connect("Idle"))
    assert got[0] != r["command_uuid"] and got[1]["RequestType"] == "ProfileList"
    devs[1].connect("Acknowledged", got[0])
    j = api.get(f"/api/v1/jobs/{r['job']['id']}").json()
    assert j["counts"]["acknowledged"] == 2 and j["state"] == "finished" and j["progress"] == 1.0


def test_everything_queued_is_audited(api, client, school, container):
    enroll_n(client, school, 1)
    r = api.post("/api/v1/commands", json={"request_type": "DeviceLock", "school": school["id"],
                                           "params": {"Message": "Bitte abgeben"}}).json()
    api.post(f"/api/v1/jobs/{r['job']['id']}/cancel")
    api.post("/api/v1/tokens", json={"name": "helpdesk", "role": "support"})
    log = api.get("/api/v1/audit").json()["items"]
    assert [e["action"] for e in log] == ["token:create", "job:cancel", "queue:DeviceLock"]
    assert all(e["actor"] == "admin" and e["at"] for e in log)
    assert log[2]["target"] == f"school:{school['id']}" and log[2]["details"]["devices"] == 1
    only = api.get("/api/v1/audit", params={"action": "job:cancel"}).json()
    assert only["total"] == 1


def test_unknown_job_is_404(api):
    assert api.get("/api/v1/jobs/nope").status_code == 404
    assert api.post("/api/v1/jobs/nope/cancel").status_code == 404


def test_profile_push_job_queues_the_school_devices_that_lack_it(api, client, school, container):
    from sqlalchemy import insert

    from app.db.models import DeviceProfile
    from app.services.enrollment import hash_secret
    from profiles.wifi_profile import wifi_psk_profile

    container.schools.upsert("gs-sued", "Grundschule Süd", hash_secret("other-token"), container.clock())
    other = TestDevice(client).enroll("gs-sued", "other-token")
    has_it, gone, *lacking = enroll_n(client, school, 4)
    container.checkin_store.checkout(gone.udid, container.clock())
    p = container.profiles.store(school_id=school["id"], role=None, name="wifi",
                                 payload=wifi_psk_profile(school["id"], "Stadt", "Schule", "Pausenbrot2026!"))
    with container.sessions.begin() as s:
        s.execute(insert(DeviceProfile).values(udid=has_it.udid, identifier=p.identifier, content_hash=p.content_hash,
                                               source="acknowledged", updated_at=container.clock()))

    r = api.post(f"/api/v1/profiles/{p.id}/push", json={}).json()
    assert r["queued"] == 2 and r["job"]["total"] == 2 and r["job"]["school_id"] == school["id"]
    listed = api.get(f"/api/v1/jobs/{r['job']['id']}/devices").json()["items"]
    assert sorted(i["udid"] for i in listed) == sorted(d.udid for d in lacking)
    assert {i["command_uuid"] for i in listed} == {r["command_uuid"]}

    everyone = api.post(f"/api/v1/profiles/{p.id}/push", json={"only_changed": False}).json()
    listed = api.get(f"/api/v1/jobs/{everyone['job']['id']}/devices").json()["items"]
    assert sorted(i["udid"] for i in listed) == sorted(d.udid for d in (has_it, *lacking))
    assert other.udid not in {i["udid"] for i in listed} and gone.udid not in {i["udid"] for i in listed}
    log = api.get("/api/v1/audit", params={"action": "queue:InstallProfile"}).json()["items"]
    assert [e["details"]["devices"] for e in log] == [3, 2]
