"""The mock ADE server behaves like Apple's device assignment API (driven with the real client)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import socket
import subprocess
import sys
import time

import httpx
import pytest

from mdm.ade import oauth
from mdm.ade.client import ADEClient
from mdm.ade.errors import ADEAuthError, ADECursorError
from mdm.ade.token import decrypt_server_token
from mdm.pki import create_ca, issue_identity
from simulator.mock_ade import MockADEThread, make_server_token


@pytest.fixture
def ade():
    t = MockADEThread()
    with t as url:
        yield t.state, url


@pytest.fixture
def client(ade):
    state, url = ade
    with ADEClient(state.new_token(), url, sleep=lambda s: None, max_retries=4) as c:
        yield c


def test_session_needs_a_valid_oauth_signature(ade):
    state, url = ade
    tok = state.new_token()
    session = f"{url}/session"

    def get(**kw):
        args = dict(consumer_key=tok.consumer_key, consumer_secret=tok.consumer_secret, token=tok.access_token,
                    token_secret=tok.access_secret)
        args.update(kw)
        return httpx.get(session, headers={"Authorization": oauth.authorization_header("GET", session, **args)})

    assert get().status_code == 200 and "auth_session_token" in get().json()
    assert get(token_secret="wrong").status_code == 401
    assert get(consumer_key="CK_unknown").status_code == 401
    assert get(timestamp=int(time.time()) - 3600).status_code == 401
    assert get(nonce="n1").status_code == 200 and get(nonce="n1").status_code == 401  # replay
    assert httpx.get(session).status_code == 400
    state.credentials[tok.consumer_key] = dataclasses.replace(
        tok, access_token_expiry=dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc))
    assert get().status_code == 403


def test_api_needs_a_live_session_and_the_protocol_header(ade, client):
    state, url = ade
    assert httpx.get(f"{url}/account").status_code == 401
    session = client.new_session()
    assert httpx.get(f"{url}/account", headers={"X-ADM-Auth-Session": session}).status_code == 400
    ok = httpx.get(f"{url}/account", headers={"X-ADM-Auth-Session": session, "X-Server-Protocol-Version": "3"})
    assert ok.status_code == 200 and ok.json()["org_type"] == "edu" and ok.headers["x-adm-auth-session"] == session
    state.expire_sessions()
    assert client.account()["server_name"]  # the client got a new session by itself
    assert client.stats["sessions"] == 2


def test_fetch_pages_then_exhausted_then_sync_reports_changes(ade, client):
    state, _ = ade
    split = state.seed(25, ["gs-a", "gs-b"], prefix="DMP")
    assert len(split["gs-a"]) == 13 and len(split["gs-b"]) == 12
    pages = list(client.pages("fetch", None, limit=10))
    assert [len(p.devices) for p in pages] == [10, 10, 5] and [p.more_to_follow for p in pages] == [True, True, False]
    d = pages[0].devices[0]
    assert d["serial_number"] == "DMP00001" and d["profile_status"] == "empty" and d["model"] and d["color"]
    with pytest.raises(ADECursorError, match="EXHAUSTED_CURSOR"):
        client.fetch_devices(pages[-1].cursor)
    assert client.sync_devices(pages[-1].cursor).devices == []

    uuid = client.define_profile({"profile_name": "A", "url": "https://mdm.example/enroll/ade/gs-a",
                                  "is_supervised": True, "await_device_configured": True})
    assert client.assign_profile(uuid, ["DMP00001", "NOPE"]) == {"DMP00001": "SUCCESS", "NOPE": "NOT_ACCESSIBLE"}
    state.add_device("NEW00001")
    state.disown("DMP00002")
    page = client.sync_devices(pages[-1].cursor)
    ops = [(x["serial_number"], x["op_type"]) for x in page.devices]
    assert ops == [("DMP00001", "modified"), ("NEW00001", "added"), ("DMP00002", "deleted")]
    assert page.devices[0]["profile_uuid"] == uuid and page.devices[0]["profile_status"] == "assigned"
    assert client.sync_devices(page.cursor).devices == []
    again = list(client.pages("fetch", None))
    assert sum(len(p.devices) for p in again) == 25  # 25 seeded + 1 added - 1 deleted


def test_sync_limits_cursors_and_expiry(ade, client):
    state, _ = ade
    state.seed(5, ["s"], prefix="LIM")
    first = client.fetch_devices(None)
    for i in range(4):
        state.add_device(f"MORE{i}")
    page = client.sync_devices(first.cursor, limit=3)
    assert len(page.devices) == 3 and page.more_to_follow
    rest = client.sync_devices(page.cursor, limit=3)
    assert len(rest.devices) == 1 and not rest.more_to_follow
    with pytest.raises(ADECursorError, match="INVALID_CURSOR"):
        client.sync_devices("garbage")
    with pytest.raises(ADECursorError, match="CURSOR_REQUIRED"):
        client.request("POST", "/devices/sync", body={})
    state.expire_cursors()
    with pytest.raises(ADECursorError, match="EXPIRED_CURSOR"):
        client.sync_devices(rest.cursor)


def test_profiles_and_the_cloud_configuration_a_device_sees(ade, client):
    state, url = ade
    state.seed(2, ["s"], prefix="CC")
    assert httpx.get(f"{url}/_device/cloud-configuration/CC00001").status_code == 404
    profile = {"profile_name": "Schule", "url": "https://mdm.example/enroll/ade/s", "is_supervised": True,
               "is_mdm_removable": False, "await_device_configured": True, "skip_setup_items": ["Siri"],
               "language": "de", "region": "DE", "org_magic": "s", "department": "Schule", "devices": ["CC00001"]}
    uuid = client.define_profile(profile)
    assert client.get_profile(uuid)["profile_name"] == "Schule"
    cfg = httpx.get(f"{url}/_device/cloud-configuration/CC00001").json()
    assert cfg["ConfigurationURL"] == profile["url"] and cfg["IsMDMUnremovable"] is True
    assert cfg["AwaitDeviceConfigured"] is True and cfg["SkipSetup"] == ["Siri"] and cfg["Language"] == "de"
    assert state.devices["CC00001"].profile_status == "pushed"
    for bad in ({"url": "https://x"}, {"profile_name": "x", "url": "http://insecure"},
                {"profile_name": "x", "url": "https://x", "is_supervised": "yes"}):
        with pytest.raises(Exception, match="400"):
            client.define_profile(bad)
    assert client.remove_profile(["CC00001"]) == {"CC00001": "SUCCESS"}
    assert httpx.get(f"{url}/_device/cloud-configuration/CC00001").status_code == 404


def test_injected_faults_are_retried_by_the_client(ade):
    state, url = ade
    state.seed(3, ["s"], prefix="F")
    waits = []
    with ADEClient(state.new_token(), url, sleep=waits.append, max_retries=5) as c:
        c.account()
        state.inject(503, retry_after=2)
        state.inject(429, retry_after=1)
        state.inject(500)
        state.inject(401)  # an expired session
        page = c.fetch_devices(None)
    assert len(page.devices) == 3 and waits[:2] == [2.0, 1.0] and len(waits) == 3
    assert c.stats["sessions"] == 2 and state.counts["fault:503"] == 1 and state.counts["fault:429"] == 1


def test_injected_faults_can_target_one_path(ade, client):
    state, _ = ade
    state.inject(503, n=10, path="/devices/sync")
    assert client.account()["org_name"]
    assert len(state.faults) == 10


def test_an_expired_access_token_is_an_auth_error(ade):
    state, url = ade
    tok = state.new_token(expiry=dt.datetime(2001, 1, 1, tzinfo=dt.timezone.utc))
    with ADEClient(tok, url, sleep=lambda s: None) as c, pytest.raises(ADEAuthError):
        c.account()


def test_server_tokens_for_an_mdm_certificate(ade):
    state, url = ade
    ident = issue_identity(create_ca("ca", "org"), "ade")
    p7m = make_server_token(state, ident.cert_pem())
    tok = decrypt_server_token(p7m, ident.key, ident.cert)
    assert tok.consumer_key in state.credentials
    over_http = httpx.post(f"{url}/_mock/server-token", content=ident.cert_pem())
    assert decrypt_server_token(over_http.content, ident.key, ident.cert).consumer_key in state.credentials
    with ADEClient(tok, url) as c:
        assert c.account()["server_name"] == "schoolmdm"


def test_seed_and_stats_over_http(ade):
    _, url = ade
    split = httpx.post(f"{url}/_mock/seed", json={"n": 4, "schools": ["a", "b"]}).json()
    assert {k: len(v) for k, v in split.items()} == {"a": 2, "b": 2}
    assert httpx.post(f"{url}/_mock/inject", json={"status": 503, "n": 2}).json() == {"queued": 2}
    assert httpx.get(f"{url}/_mock/stats").json()["devices"] == 4


def test_runs_as_a_module(tmp_path):
    ident = issue_identity(create_ca("ca", "org"), "ade")
    (tmp_path / "ade.pem").write_bytes(ident.cert_pem())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "simulator.mock_ade", "--port", str(port), "--devices", "6",
                             "--schools", "a,b", "--token-cert", str(tmp_path / "ade.pem"), "--token-out",
                             str(tmp_path / "t.p7m")], stdout=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(4)]
        assert "listening" in lines[-1], lines
        tok = decrypt_server_token((tmp_path / "t.p7m").read_bytes(), ident.key, ident.cert)
        for _ in range(100):
            try:
                with ADEClient(tok, f"http://127.0.0.1:{port}") as c:
                    assert len(c.fetch_devices(None).devices) == 6
                break
            except Exception:
                time.sleep(0.1)
        else:
            pytest.fail("mock ADE did not answer")
    finally:
        proc.terminate()
        proc.wait(timeout=20)
