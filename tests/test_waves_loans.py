"""Rollout waves and progress (delivered, enrolled, configured, failed; next in line) and loaner iPads
(lend, find by pupil and by iPad, return with erase), with role checks and the audit log."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from sqlalchemy import update

from app.db.models import Device
from app.services.enrollment import hash_secret
from tests.support.device import TestDevice

ROSTER = Path(__file__).resolve().parents[1] / "examples" / "roster"
NOW = dt.datetime(2025, 9, 1, 8, 0, tzinfo=dt.timezone.utc)


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def tokens(container):
    return {role: container.tokens.create(f"t-{role}", role, None, container.clock())
            for role in ("support", "technician")}


def school(container, sid: str, name: str) -> dict:
    token = "enroll-" + sid
    container.schools.upsert(sid, name, hash_secret(token), container.clock())
    return {"id": sid, "token": token}


def add_devices(container, school_id: str, n: int, *, configured: int = 0, prefix: str = "") -> list[str]:
    """Enrolled device rows without the protocol (rollout counts only read them)."""
    serials = [f"{prefix or school_id[:3].upper()}{i:07d}" for i in range(n)]
    with container.sessions.begin() as s:
        for i, serial in enumerate(serials):
            s.add(Device(udid=f"UDID-{serial}", serial=serial, school_id=school_id, enrollment_state="enrolled",
                         configured_at=NOW if i < configured else None, created_at=NOW))
    return serials


def test_wave_counts_delivered_enrolled_configured_failed(api, client, container, tokens):
    a = school(container, "gs-nord", "Grundschule Nord")
    school(container, "gy-sued", "Gymnasium Süd")
    devs = [TestDevice(client).enroll(a["id"], a["token"]) for _ in range(4)]
    with container.sessions.begin() as s:
        s.execute(update(Device).where(Device.udid == devs[0].udid).values(configured_at=NOW))
    r = api.post("/api/v1/commands", json={"request_type": "ProfileList", "devices": [devs[1].udid]}).json()
    devs[1].connect("Idle")
    devs[1].connect("Error", r["command_uuid"])  # set-up failed on this one
    devs[3].checkin(devs[3].authenticate_body().replace(b"Authenticate", b"CheckOut"))  # checked out
    csv = "serial,school\n" + "".join(f"{d.serial}\n" for d in devs) + "DMPNOTYET001\nDMPNOTYET002,gy-sued\n"
    w = api.post("/api/v1/waves", json={"name": "2025-09 Lieferung 1", "csv": csv, "school": "gs-nord"},
                 headers=bearer(tokens["technician"]))
    assert w.status_code == 201, w.text
    w = w.json()
    assert w["schools"] == [
        {"school_id": "gs-nord", "delivered": 5, "enrolled": 3, "configured": 1, "failed": 2},
        {"school_id": "gy-sued", "delivered": 1, "enrolled": 0, "configured": 0, "failed": 0}]
    states = {d["serial"]: (d["state"], d["reason"]) for d in w["devices"]}
    assert states[devs[0].serial] == ("configured", None) and states[devs[2].serial] == ("enrolled", None)
    assert states[devs[1].serial][0] == "failed" and states[devs[3].serial] == ("failed", "checked out (unenrolled)")
    assert states["DMPNOTYET001"] == ("delivered", None)
    assert api.get(f"/api/v1/waves/{w['id']}").json()["totals"]["delivered"] == 6
    listed = api.get("/api/v1/waves").json()
    assert listed["items"][0]["name"] == "2025-09 Lieferung 1" and listed["items"][0]["devices"] == 6
    audit = api.get("/api/v1/audit", params={"action": "wave:create"}).json()["items"][0]
    assert audit["actor"] == "t-technician" and audit["details"]["schools"] == {"gs-nord": 5, "gy-sued": 1}


def test_a_bad_wave_is_refused_whole(api, container, tokens):
    school(container, "gs-nord", "Grundschule Nord")
    assert api.post("/api/v1/waves", json={"name": "w1", "csv": "DMPA00000001,gs-nord\n"}).status_code == 201
    csv = "DMPA00000002,gs-nord\nDMPA00000001,gs-nord\nbad serial!,gs-nord\nDMPA00000003,gs-west\nDMPA00000002\n"
    r = api.post("/api/v1/waves", json={"name": "w2", "csv": csv})
    assert r.status_code == 422
    problems = [(p["row"], p["column"]) for p in r.json()["error"]["details"]["problems"]]
    assert problems == [(2, "serial"), (3, "serial"), (4, "school"), (5, "serial"), (5, "school")]
    assert "row 2, column serial: DMPA00000001 was delivered already in wave 'w1'" in r.json()["error"]["message"]
    assert api.get("/api/v1/waves").json()["total"] == 1  # nothing stored
    assert api.post("/api/v1/waves", json={"name": "w1", "csv": "DMPA00000009,gs-nord"}).status_code == 409
    assert api.post("/api/v1/waves", json={"name": "w3", "csv": "DMPA00000009,gs-nord"},
                    headers=bearer(tokens["support"])).status_code == 403


def test_rollout_progress_and_next_in_line(api, container, tokens):
    plans = {"s1": (2, 10, 5, 0), "s2": (1, 4, 4, 0), "s3": (1, 10, 2, 1), "s4": (None, 5, 0, 0),
             "s5": (3, 2, 2, 2), "s6": (None, None, 0, 0)}  # priority, planned, delivered, configured
    serials = {}
    for sid, (prio, planned, delivered, configured) in plans.items():
        school(container, sid, f"Schule {sid}")
        serials[sid] = add_devices(container, sid, delivered, configured=configured, prefix=f"X{sid.upper()}")
        body = {k: v for k, v in (("priority", prio), ("planned", planned)) if v is not None}
        if body:
            assert api.put(f"/api/v1/rollout/schools/{sid}", json=body).status_code == 200
    csv = "".join(f"{s},{sid}\n" for sid, ss in serials.items() for s in ss)
    assert api.post("/api/v1/waves", json={"name": "w", "csv": csv}).status_code == 201
    res = api.get("/api/v1/rollout", headers=bearer(tokens["support"])).json()
    assert [n["school_id"] for n in res["next_in_line"]] == ["s3", "s2", "s1", "s4"]
    assert res["next_in_line"][0] == {"school_id": "s3", "name": "Schule s3", "priority": 1, "to_deliver": 8,
                                      "share_to_deliver": 0.8, "progress": 0.1}
    by = {i["school_id"]: i for i in res["schools"]}
    assert by["s5"]["done"] and not by["s2"]["done"] and not by["s6"]["in_rollout"]
    assert res["overall"] == {"planned": 31, "delivered": 13, "enrolled": 13, "configured": 3, "failed": 0,
                              "to_deliver": 18, "progress": round(3 / 31, 4), "schools": 5, "schools_done": 1}
    # only the fields sent change; the role checks
    assert api.put("/api/v1/rollout/schools/s1", json={"planned": 12}).json() == \
        {"school_id": "s1", "priority": 2, "planned": 12}
    assert api.put("/api/v1/rollout/schools/s1", json={"priority": 1},
                   headers=bearer(tokens["technician"])).status_code == 403
    assert api.put("/api/v1/rollout/schools/nope", json={"priority": 1}).status_code == 404
    scoped = container.tokens.create("desk-s1", "support", ["s1"], container.clock())
    mine = api.get("/api/v1/rollout", headers=bearer(scoped)).json()
    assert [i["school_id"] for i in mine["schools"]] == ["s1"] and mine["overall"]["planned"] == 12


@pytest.fixture
def lindenhof(client, container):
    s = school(container, "gs-lindenhof", "Grundschule Am Lindenhof")
    school(container, "gy-schiller", "Schiller-Gymnasium")
    container.roster.import_path(ROSTER, actor="test")
    return [TestDevice(client).enroll(s["id"], s["token"]) for _ in range(2)]


def test_lend_find_and_return_with_erase(api, client, container, tokens, lindenhof):
    ipad, other = lindenhof
    desk = bearer(tokens["support"])
    r = api.post("/api/v1/loans", json={"serial": ipad.serial, "pupil": "mia.koehler"}, headers=desk)
    assert r.status_code == 201, r.text
    loan = r.json()
    assert loan["pupil"] == {"person_id": "S-100001", "name": "Mia Köhler", "person_number": "LH-24-001",
                             "sis_username": "mia.koehler"} and loan["active"] and loan["school_id"] == "gs-lindenhof"
    # one open loan per iPad and per pupil
    assert api.post("/api/v1/loans", json={"udid": ipad.udid, "pupil": "S-100002"}, headers=desk).status_code == 409
    assert api.post("/api/v1/loans", json={"serial": other.serial, "pupil": "LH-24-001"},
                    headers=desk).status_code == 409
    assert api.post("/api/v1/loans", json={"serial": other.serial, "pupil": "nobody"}, headers=desk).status_code == 404
    # the iPad by pupil: device search by name, number or user name; the pupil by iPad
    for q in ("Köhler", "mia köhler", "LH-24-001", "mia.koehler"):
        found = api.get("/api/v1/devices", params={"q": q}, headers=desk).json()
        assert [d["udid"] for d in found["items"]] == [ipad.udid], q
    assert api.get("/api/v1/loans", params={"device": ipad.serial}, headers=desk).json()["items"][0]["id"] == loan["id"]
    assert api.get("/api/v1/loans", params={"pupil": "köhler", "active": True}).json()["total"] == 1
    shown = api.get(f"/api/v1/devices/{ipad.udid}", headers=desk).json()
    assert shown["loan"]["id"] == loan["id"] and len(shown["loans"]) == 1
    # the support desk may take it back but not erase it
    assert api.post(f"/api/v1/loans/{loan['id']}/return", json={"erase": True}, headers=desk).status_code == 403
    r = api.post(f"/api/v1/loans/{loan['id']}/return", json={"erase": True, "note": "Display heil"},
                 headers=bearer(tokens["technician"]))
    assert r.status_code == 200, r.text
    back = r.json()
    assert not back["active"] and back["returned_by"] == "t-technician" and back["erase_job"]["total"] == 1
    uuid, cmd = ipad.command_of(ipad.connect("Idle"))
    assert cmd["RequestType"] == "EraseDevice" and back["erase_job_id"] == back["erase_job"]["id"]
    assert api.post(f"/api/v1/loans/{loan['id']}/return", json={}).status_code == 409
    # the history stays; the iPad and the pupil are free again
    assert api.get("/api/v1/devices", params={"q": "Köhler"}).json()["total"] == 0
    again = api.post("/api/v1/loans", json={"serial": ipad.serial, "pupil": "S-100002"}, headers=desk).json()
    shown = api.get(f"/api/v1/devices/{ipad.serial}").json()
    assert shown["loan"]["id"] == again["id"] and [x["id"] for x in shown["loans"]] == [again["id"], loan["id"]]
    history = api.get("/api/v1/loans", params={"device": ipad.udid}).json()
    assert history["total"] == 2 and history["items"][1]["return_note"] == "Display heil"
    actions = [e["action"] for e in api.get("/api/v1/audit").json()["items"]]
    assert actions[:4] == ["loan:lend", "loan:return", "queue:EraseDevice", "loan:lend"]


def test_return_without_erase_and_school_scope(api, container, tokens, lindenhof):
    ipad, _ = lindenhof
    other_desk = bearer(container.tokens.create("desk-schiller", "support", ["gy-schiller"], container.clock()))
    assert api.post("/api/v1/loans", json={"serial": ipad.serial, "pupil": "S-100003"},
                    headers=other_desk).status_code == 403
    loan = api.post("/api/v1/loans", json={"serial": ipad.serial, "pupil": "S-100003"},
                    headers=bearer(tokens["support"])).json()
    assert api.get(f"/api/v1/loans/{loan['id']}", headers=other_desk).status_code == 404
    # the roster's read side, within the token's schools
    assert api.get("/api/v1/roster/pupils", params={"q": "Köhler"}).json()["items"][0]["person_id"] == "S-100001"
    assert api.get("/api/v1/roster/pupils", params={"q": "Köhler"}, headers=other_desk).json()["total"] == 0
    classes = api.get("/api/v1/schools/gs-lindenhof/classes").json()["items"]
    assert [(c["name"], len(c["pupils"])) for c in classes] == [("Klasse 1a", 3), ("Klasse 2b", 3), ("Klasse 4a", 3)]
    assert api.get("/api/v1/schools/gs-lindenhof/classes", headers=other_desk).status_code == 403
    assert api.get("/api/v1/loans", headers=other_desk).json()["total"] == 0
    # an iPad that is no longer enrolled cannot be erased remotely: the return is refused, nothing changes
    ipad.checkin(ipad.authenticate_body().replace(b"Authenticate", b"CheckOut"))
    r = api.post(f"/api/v1/loans/{loan['id']}/return", json={"erase": True}, headers=bearer(tokens["technician"]))
    assert r.status_code == 409 and "not enrolled" in r.json()["error"]["message"]
    assert api.get(f"/api/v1/loans/{loan['id']}").json()["active"]
    r = api.post(f"/api/v1/loans/{loan['id']}/return", json={"erase": False}, headers=bearer(tokens["support"]))
    assert r.status_code == 200 and r.json()["erase_job"] is None and r.json()["returned_at"]
    assert api.get("/api/v1/jobs").json()["total"] == 0  # nothing queued


def test_open_loans_follow_the_roster(api, container, tokens, lindenhof, tmp_path):
    import shutil

    ipad, _ = lindenhof
    loan = api.post("/api/v1/loans", json={"serial": ipad.serial, "pupil": "S-100004"}).json()
    roster = tmp_path / "roster"
    shutil.copytree(ROSTER, roster)
    students = roster / "students.csv"
    students.write_text(students.read_text().replace("Noah,,Braun", "Noah,,Braun-Schmidt"))
    rep = container.roster.import_path(roster, actor="test")
    assert rep["loans_updated"] == 1
    assert api.get(f"/api/v1/loans/{loan['id']}").json()["pupil"]["name"] == "Noah Braun-Schmidt"
    assert api.get("/api/v1/devices", params={"q": "braun-schmidt"}).json()["total"] == 1
    # a pupil who leaves the roster keeps the loan in the history; the import warns
    students.write_text("".join(x for x in students.read_text().splitlines(keepends=True) if "S-100004" not in x))
    (roster / "rosters.csv").write_text("".join(
        x for x in (roster / "rosters.csv").read_text().splitlines(keepends=True) if "S-100004" not in x))
    rep = container.roster.import_path(roster, actor="test")
    assert rep["pupils"]["removed"] == ["S-100004"] and "still on loan" in rep["warnings"][0]
    assert api.get("/api/v1/loans", params={"pupil": "S-100004"}).json()["total"] == 1


def test_cli_waves_rollout_and_loans(container, settings, data_dir, lindenhof, monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from app.cli.main import app as cli
    from app.main import create_app
    from app.settings import get_settings
    from tests.conftest import ADMIN_TOKEN
    from tests.support.live import LiveServer, free_socket

    ipad, other = lindenhof
    pki = data_dir / "pki"
    server = LiveServer(create_app(settings, container=container, background=False), free_socket(),
                        str(pki / "tls.pem"), str(pki / "tls.key"))
    env = {"SCHOOLMDM_API_URL": None, "SCHOOLMDM_API_TOKEN": ADMIN_TOKEN, "SCHOOLMDM_API_CA_FILE": None,
           "SCHOOLMDM_DATA_DIR": str(settings.data_dir), "SCHOOLMDM_DATABASE_URL": settings.database_url,
           "COLUMNS": "250"}

    def run(*args):
        get_settings.cache_clear()
        try:
            return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
        finally:
            get_settings.cache_clear()

    with server:
        env["SCHOOLMDM_API_URL"] = server.url
        wave_csv = tmp_path / "wave.csv"
        wave_csv.write_text(f"serial\n{ipad.serial}\n{other.serial}\n")
        r = run("waves", "create", "Lieferung 1", "--csv", str(wave_csv), "--school", "gs-lindenhof")
        assert r.exit_code == 0, r.output
        assert "gs-lindenhof" in r.stdout and "delivered 2, enrolled 2" in r.stdout
        wave_id = json.loads(run("waves", "list", "--json").stdout)["items"][0]["id"]
        assert json.loads(run("waves", "show", str(wave_id), "--json").stdout)["totals"]["enrolled"] == 2
        assert run("rollout", "plan", "gs-lindenhof", "--priority", "1", "--planned", "4").exit_code == 0
        r = run("rollout")
        assert r.exit_code == 0 and "next in line: gs-lindenhof (2 to deliver)" in r.stdout
        r = run("loans", "lend", ipad.serial, "lina.hartmann")
        assert r.exit_code == 0 and "lent to Lina Hartmann" in r.stdout
        r = run("loans", "find", "Hartmann", "--json")
        loan_id = json.loads(r.stdout)["items"][0]["id"]
        assert run("loans", "find", ipad.serial).exit_code == 0
        assert run("loans", "find", "Niemand").exit_code == 3
        r = run("loans", "return", str(loan_id), "--erase")
        assert r.exit_code == 0 and "EraseDevice queued" in r.stdout
        r = run("loans", "list", "--device", ipad.serial, "--returned", "--json")
        assert json.loads(r.stdout)["total"] == 1
