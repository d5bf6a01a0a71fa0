"""Server side of Apple School Manager: token upload, sync, per-school profiles and assignment,
the ADE enrollment endpoint, device set-up (AwaitingConfiguration) and the ``schoolmdm ade`` CLI."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.container import Container
from app.services.ade_profile import PUPIL_SKIP_SETUP_ITEMS
from app.services.enrollment import hash_secret
from app.settings import get_settings
from mdm import plist
from mdm.ade.client import ADEClient
from mdm.ade.errors import ADEUnavailable
from mdm.ade.machineinfo import CONTENT_TYPE, build_machine_info
from mdm.enrollment import find_payload
from profiles.signing import sign_profile
from simulator.ade_device import DeviceAttestation
from simulator.mock_ade import MockADEThread, make_server_token
from tests.support.db import truncate_all
from tests.support.device import TestDevice, pooled_key

CITY = Path(__file__).resolve().parents[1] / "examples" / "city"
APPLE_SKIPKEYS = Path(os.environ.get("APPLE_DM_SCHEMA", "/work/shared/apple-device-management")) / "other" / "skipkeys.yaml"
A, B = "gs-lindenhof", "gy-schiller"


@pytest.fixture(scope="module")
def mock():
    t = MockADEThread()
    with t:
        yield t


@pytest.fixture
def ade(mock):
    st = mock.state
    with st.lock:
        st.devices.clear(), st.events.clear(), st.profiles.clear(), st.faults.clear(), st.cursors.clear()
        st.counts.clear()
    return st


@pytest.fixture
def c(settings, mock, ade):
    c = Container(settings.model_copy(update={"ade_url": mock.url}))
    truncate_all(c.engine)
    c.ade_sync.client_factory = lambda tok: ADEClient(tok, mock.url, sleep=lambda s: None, max_retries=2)
    yield c
    c.close()


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    d = tmp_path_factory.mktemp("city") / "city"
    shutil.copytree(CITY, d)
    return d


def install(c, ade):
    return c.ade_sync.install_token(make_server_token(ade, c.ade_identity.cert), c.ade_identity, actor="test")


def seeded(c, ade, n=10, schools=(A, B)):
    for s in schools:
        c.schools.upsert(s, s.upper(), None, c.clock())
    split = ade.seed(n, list(schools))
    for school, serials in split.items():
        c.ade_store.add_rules(school, serials=serials, actor="test", now=c.clock())
    install(c, ade)
    return split


def test_identity_and_token_upload_never_show_secrets(c, ade):
    ident = c.ade_identity
    assert (c.pki.path("ade.key").stat().st_mode & 0o777) == 0o600
    assert ident.cert == c.ade_identity.cert  # reused
    doc = install(c, ade)
    assert doc["server_name"] == "schoolmdm" and doc["org_name"] and doc["access_token_expiry"]
    text = json.dumps({**doc, **c.ade_store.status()})
    tok = c.ade_store.token()
    assert tok.consumer_secret not in text and tok.access_secret not in text and tok.access_token not in text


def test_sync_maps_defines_one_profile_per_school_and_assigns(c, ade, city):
    c.blueprints.import_dir(city, actor="test")
    split = seeded(c, ade, 10)
    ade.add_device("UNMAPPED01")
    res = c.ade_sync.run()
    assert res["fetched"] == 11 and res["changed"] == 10 and res["unmapped"] == 1
    assert sorted(res["profiles_defined"]) == [A, B] and res["assigned"] == 10
    for school in (A, B):
        p = c.ade_store.profile(school)["definition"]
        assert p["url"] == f"{c.settings.public_url}/enroll/ade/{school}"
        assert p["is_supervised"] and p["await_device_configured"] and p["is_mdm_removable"] is False
        assert (p["language"], p["region"]) == ("de", "DE") and "Siri" in p["skip_setup_items"]
        assert ade.profiles[c.ade_store.profile(school)["profile_uuid"]]["org_magic"] == school
        for serial in split[school]:
            assert ade.devices[serial].profile_uuid == c.ade_store.profile(school)["profile_uuid"]
    again = c.ade_sync.run()
    assert again["profiles_defined"] == [] and again["assigned"] == 0 and again["fetched"] == 0
    assert again["modified"] == 10  # the assignments come back through sync
    st = c.ade_store.status()
    assert st["by_school"] == {A: 5, B: 5, "None": 1} and st["assign_status"]["SUCCESS"] == 10


def test_a_changed_definition_is_defined_again_and_reassigned(c, ade):
    seeded(c, ade, 4)
    c.ade_sync.run()
    old = c.ade_store.profile(A)["profile_uuid"]
    c.ade_sync.settings = c.settings.model_copy(update={"ade_support_phone": "+49 30 1234"})
    res = c.ade_sync.run()
    new = c.ade_store.profile(A)
    assert sorted(res["profiles_defined"]) == [A, B] and res["assigned"] == 4
    assert new["profile_uuid"] != old and new["definition"]["support_phone_number"] == "+49 30 1234"


def test_an_outage_keeps_the_cursor_and_the_next_run_resumes(c, ade):
    seeded(c, ade, 9)
    c.ade_sync.page_size = 3
    pages = []
    real = ade.fetch

    def flaky(key, limit):
        out = real(key, limit)
        pages.append(out)
        if len(pages) == 1:  # Apple goes down right after the first page
            ade.inject(503, n=10, path="/server/devices")
        return out

    ade.fetch = flaky
    try:
        with pytest.raises(ADEUnavailable):
            c.ade_sync.run()
    finally:
        del ade.fetch
    first_page = pages
    phase, cursor = c.ade_store.cursor()
    assert phase == "fetch" and cursor == first_page[0]["cursor"]
    assert c.ade_store.config()["last_error"].startswith("ADEUnavailable")
    assert c.ade_store.status()["devices"] == 3
    ade.faults.clear()
    res = c.ade_sync.run()
    assert res["fetched"] == 6 and not res["cursor_reset"] and ade.counts["fetched"] == 9
    assert c.ade_store.status()["devices"] == 9 and c.ade_store.config()["last_error"] is None


def test_an_expired_cursor_fetches_everything_again(c, ade):
    seeded(c, ade, 4)
    c.ade_sync.run()
    ade.expire_cursors()
    ade.disown(next(iter(ade.devices)))
    res = c.ade_sync.run()
    assert res["cursor_reset"] and res["fetched"] == 3


def test_ade_enrollment_endpoint(c, ade, client_for):
    split = seeded(c, ade, 4)
    c.ade_sync.run()
    http = client_for(c)
    att = DeviceAttestation()
    serial, other_school = split[A][0], split[B][0]

    def post(school, serial, identity=None, body=None):
        info = build_machine_info(udid="00008103-ABCDEF0123456789", serial=serial, product="iPad13,18",
                                  version="21F90", os_version="17.5.1")
        body = body if body is not None else sign_profile(info, identity or att.identity(serial, pooled_key()))
        return http.post(f"/enroll/ade/{school}", content=body, headers={"Content-Type": CONTENT_TYPE})

    r = post(A, serial)
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-apple-aspen-config"
    assert c.ade_store.status()["enrolled"] == 1
    for school, s, reason in ((A, other_school, f"belongs to school {B}"), (A, "NOTOURS01", "not assigned to this"),
                              ("nowhere", serial, "unknown school")):
        r = post(school, s)
        assert r.status_code == 403 and reason in r.json()["error"]["message"], r.text
    assert post(A, serial, body=build_machine_info(udid="X", serial=serial, product="p", version="v")).status_code == 403
    ade.disown(serial)
    c.ade_sync.run()
    r = post(A, serial)
    assert r.status_code == 403 and "removed" in r.json()["error"]["message"]


def test_machine_info_must_chain_to_the_device_ca_when_configured(c, ade, tmp_path, client_for):
    split = seeded(c, ade, 2)
    c.ade_sync.run()
    att = DeviceAttestation()
    (tmp_path / "device-ca.pem").write_bytes(att.ca.cert_pem())
    c2 = Container(c.settings.model_copy(update={"ade_device_ca_file": tmp_path / "device-ca.pem"}))
    http = client_for(c2)
    serial = split[A][0]
    info = build_machine_info(udid="00008103-0000000000000001", serial=serial, product="iPad13,18", version="21F90")
    ok = http.post(f"/enroll/ade/{A}", content=sign_profile(info, att.identity(serial, pooled_key())))
    assert ok.status_code == 200
    forged = http.post(f"/enroll/ade/{A}", content=sign_profile(info, DeviceAttestation().identity(serial, pooled_key())))
    assert forged.status_code == 403 and "chain" in forged.json()["error"]["message"]
    c2.close()


@pytest.fixture
def client_for():
    from fastapi.testclient import TestClient

    from app.main import create_app

    made = []

    def make(container):
        t = TestClient(create_app(container.settings, container=container, background=False),
                       base_url="https://testserver")
        made.append(t.__enter__())
        return made[-1]

    yield make
    for t in made:
        t.__exit__(None, None, None)


def awaiting_device(c, http, city):
    c.blueprints.import_dir(city, actor="test")
    c.schools.upsert(A, "Lindenhof", hash_secret("t0k"), c.clock())
    d = TestDevice(http)
    d.fetch_profile(A, "t0k")
    d.scep()
    assert d.checkin(d.authenticate_body()).status_code == 200
    assert d.checkin(d.token_update_body(AwaitingConfiguration=True)).status_code == 200
    return d


def run_commands(d, fail: str | None = None) -> list[str]:
    seen, r = [], d.connect()
    while r.content:
        cu, cmd = d.command_of(r)
        seen.append(cmd["RequestType"])
        if cmd["RequestType"] == fail:
            r = d.connect("Error", cu, ErrorChain=[{"ErrorCode": 4001, "ErrorDomain": "MCProfileErrorDomain",
                                                   "LocalizedDescription": "The payload could not be installed."}])
        else:
            r = d.connect("Acknowledged", cu)
    return seen


def test_awaiting_configuration_gets_the_blueprint_then_device_configured(c, city, client_for):
    http = client_for(c)
    d = awaiting_device(c, http, city)
    assert c.devices.get(d.udid)["setup"]["state"] == "configuring"
    seen = run_commands(d)
    assert "InstallProfile" in seen and "InstallApplication" in seen
    assert seen[-1] == "DeviceConfigured" and seen.count("DeviceConfigured") == 1  # in the same session
    assert run_commands(d) == []
    info = c.devices.get(d.udid)
    assert info["setup"]["state"] == "configured" and info["setup"]["error"] is None
    job = c.jobs.get(info["setup"]["job_id"])
    assert job["counts"]["acknowledged"] == job["total"] > 0


def test_a_failed_setup_shows_the_reason_and_resumes_after_retry(c, city, client_for):
    http = client_for(c)
    d = awaiting_device(c, http, city)
    run_commands(d, fail="InstallApplication")
    setup = c.devices.get(d.udid)["setup"]
    assert setup["state"] == "failed"
    assert setup["error"].startswith("InstallApplication 'app:") and "could not be installed" in setup["error"]
    assert "DeviceConfigured" not in run_commands(d)
    c.jobs.retry(setup["job_id"], "desk")
    again = run_commands(d)
    assert set(again[:-1]) == {"InstallApplication"} and again[-1] == "DeviceConfigured"
    assert c.devices.get(d.udid)["setup"]["state"] == "configured"


def test_a_device_without_a_blueprint_fails_with_the_reason(c, client_for):
    c.schools.upsert("gs-empty", "Empty", hash_secret("t"), c.clock())
    http = client_for(c)
    d = TestDevice(http)
    d.fetch_profile("gs-empty", "t")
    d.scep()
    d.checkin(d.authenticate_body())
    d.checkin(d.token_update_body(AwaitingConfiguration=True))
    setup = c.devices.get(d.udid)["setup"]
    assert setup["state"] == "failed" and "has no blueprint" in setup["error"]


@pytest.mark.skipif(not APPLE_SKIPKEYS.is_file(), reason="Apple schema YAML not present")
def test_skip_keys_are_apple_names():
    import yaml

    names = {k["key"] for k in yaml.safe_load(APPLE_SKIPKEYS.read_text())["payloadkeys"]}
    assert set(PUPIL_SKIP_SETUP_ITEMS) <= names


def test_cli(c, ade, settings, monkeypatch, tmp_path):
    monkeypatch.setenv("SCHOOLMDM_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("SCHOOLMDM_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("SCHOOLMDM_ADE_URL", c.settings.ade_url)
    get_settings.cache_clear()
    from app.cli.main import app

    run = CliRunner().invoke
    try:
        r = run(app, ["ade", "identity", "--out", str(tmp_path / "ade.pem")])
        assert r.exit_code == 0 and (tmp_path / "ade.pem").read_bytes() == c.ade_identity.cert_pem()
        assert run(app, ["ade", "status"]).output.startswith("no server token")
        (tmp_path / "t.p7m").write_bytes(make_server_token(ade, c.ade_identity.cert))
        r = run(app, ["ade", "token", str(tmp_path / "t.p7m")])
        assert r.exit_code == 0 and "server token stored: MDM server schoolmdm" in r.output, r.output
        c.schools.upsert(A, "Lindenhof", None, c.clock())
        serials = ade.seed(3, [A], prefix="CLI")[A]
        (tmp_path / "delivery.csv").write_text("serial;order\n" + "\n".join(f"{s};4711" for s in serials[:2]))
        assert run(app, ["ade", "map", A, "--file", str(tmp_path / "delivery.csv"), "--prefix", "CLI"]).exit_code == 0
        assert run(app, ["ade", "map", "nowhere", "--serial", "X1"]).exit_code == 3
        r = run(app, ["ade", "sync", "--json"])
        assert r.exit_code == 0 and json.loads(r.output)["assigned"] == 3, r.output
        r = run(app, ["ade", "status", "--json"])
        doc = json.loads(r.output)
        assert doc["by_school"] == {A: 3} and doc["config"]["synced_at"] and "secret" not in r.output
        assert len(json.loads(run(app, ["ade", "rules", "--json"]).output)) == 3
        assert "3 rule(s) removed" in run(app, ["ade", "unmap", "--prefix", "CLI", "--serial", serials[0],
                                                "--serial", serials[1]]).output
    finally:
        get_settings.cache_clear()


def test_mobileconfig_from_ade_is_for_the_school(c, ade, client_for):
    split = seeded(c, ade, 2)
    c.ade_sync.run()
    http = client_for(c)
    serial = split[B][0]
    info = build_machine_info(udid="00008103-00000000000000AA", serial=serial, product="iPad13,18", version="21F90")
    r = http.post(f"/enroll/ade/{B}", content=sign_profile(info, DeviceAttestation().identity(serial, pooled_key())))
    from profiles.signing import unsign_profile

    profile = plist.loads(unsign_profile(r.content)[0])
    scep = find_payload(profile, "com.apple.security.scep")["PayloadContent"]
    assert [["OU", B]] in scep["Subject"] and [["CN", serial]] in scep["Subject"]


def test_setups_queued_together_share_a_job_and_a_failed_start_is_taken_up_again(c, city, client_for,
                                                                                 monkeypatch):
    from mdm.errors import Unavailable

    http = client_for(c)
    c.blueprints.import_dir(city, actor="test")
    c.schools.upsert(A, "Lindenhof", hash_secret("t0k"), c.clock())
    devices = [TestDevice(http) for _ in range(3)]
    for d in devices:
        d.fetch_profile(A, "t0k")
        d.scep()
        d.checkin(d.authenticate_body())

    def down(*a, **kw):
        raise Unavailable("database unavailable, retry later")

    monkeypatch.setattr(c.blueprint_push, "push", down)
    for d in devices:  # the TokenUpdate itself succeeds; the set-up waits, queued
        assert d.checkin(d.token_update_body(AwaitingConfiguration=True)).status_code == 200
    assert {c.devices.get(d.udid)["setup"]["state"] for d in devices} == {"queued"}
    monkeypatch.undo()
    assert c.device_setup.start_queued() == 3  # what the background task does
    jobs = {c.devices.get(d.udid)["setup"]["job_id"] for d in devices}
    assert len(jobs) == 1 and c.jobs.get(jobs.pop())["total"] > 0
    for d in devices:
        assert run_commands(d)[-1] == "DeviceConfigured"
        assert c.devices.get(d.udid)["setup"]["state"] == "configured"


def test_an_ade_device_gets_the_role_of_its_rule(c, ade, client_for):
    c.schools.upsert(A, "Lindenhof", hash_secret("t0k"), c.clock())
    serial = ade.seed(1, [A], prefix="TCH")[A][0]
    c.ade_store.add_rules(A, serials=[serial], role="teacher", actor="test", now=c.clock())
    install(c, ade)
    c.ade_sync.run()
    d = TestDevice(client_for(c), serial=serial)
    d.fetch_profile(A, "t0k")
    d.scep()
    assert d.checkin(d.authenticate_body()).status_code == 200
    assert c.devices.get(d.udid)["role"] == "teacher"
