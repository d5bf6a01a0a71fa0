"""Blueprint endpoints: show, diff, plan and push through the API."""

from __future__ import annotations

import shutil
from pathlib import Path

from app.services.enrollment import hash_secret
from tests.support.device import TestDevice

CITY = Path(__file__).resolve().parents[1] / "examples" / "city"


def test_blueprint_endpoints(api, client, container, tmp_path):
    city = tmp_path / "city"
    shutil.copytree(CITY, city)
    container.blueprints.import_dir(city, actor="test")
    container.schools.upsert("gy-schiller", "Schiller-Gymnasium", hash_secret("t"), container.clock())
    devs = [TestDevice(client).enroll("gy-schiller", "t") for _ in range(2)]
    doc = api.get("/api/v1/schools/gy-schiller/blueprint").json()
    assert doc["version"] == 1 and doc["versions"][0]["version"] == 1
    plan = api.get("/api/v1/schools/gy-schiller/blueprint/plan", params={"role": "pupil"}).json()
    assert {c["request_type"] for c in plan["commands"]} >= {"InstallProfile", "InstallApplication"}
    assert all(c["devices"] == 2 for c in plan["commands"] if c["item"] != "settings:name")
    r = api.post("/api/v1/schools/gy-schiller/blueprint/push", json={"role": "pupil"})
    assert r.status_code == 202
    job = r.json()["job"]
    assert job["kind"] == "blueprint" and job["total"] == sum(c["devices"] for c in plan["commands"])
    # the devices take everything; a second plan is empty
    for d in devs:
        resp = d.connect("Idle")
        while resp.content:
            cu, cmd = d.command_of(resp)
            extra = {"Identifier": f"app.{cmd.get('iTunesStoreID', 'x')}"} if cmd["RequestType"] == "InstallApplication" else {}
            resp = d.connect("Acknowledged", cu, **extra)
    assert api.get(f"/api/v1/jobs/{job['id']}").json()["state"] == "finished"
    assert api.get("/api/v1/schools/gy-schiller/blueprint/plan", params={"role": "pupil"}).json()["commands"] == []
    assert api.get("/api/v1/schools/gy-schiller/blueprint/diff").json()["changes"]  # v1 against nothing
    assert api.get("/api/v1/schools/nope/blueprint").status_code == 404
    assert api.post("/api/v1/schools/gy-schiller/blueprint/push", json={"role": "janitor"}).status_code == 422
