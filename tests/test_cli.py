"""The technician/support CLI against the real server (uvicorn, HTTPS, free port) through /api/v1."""

from __future__ import annotations

import json
import ssl
import threading
import time

import httpx
import pytest
from typer.testing import CliRunner

from app.cli import jobs as cli_jobs
from app.cli.common import CliError
from app.cli.main import app as cli
from app.main import create_app
from app.settings import get_settings
from tests.conftest import ADMIN_TOKEN
from tests.support.device import TestDevice
from tests.support.live import LiveServer, free_socket

ENV_KEYS = ("SCHOOLMDM_API_URL", "SCHOOLMDM_API_TOKEN", "SCHOOLMDM_API_CA_FILE", "SCHOOLMDM_PUBLIC_URL")


@pytest.fixture
def live(container, data_dir):
    app = create_app(container.settings, container=container, background=False)
    pki = data_dir / "pki"
    with LiveServer(app, free_socket(), str(pki / "tls.pem"), str(pki / "tls.key")) as srv:
        yield srv


@pytest.fixture
def env(live, settings, monkeypatch):
    monkeypatch.setattr(cli_jobs, "POLL_SECONDS", 0.02)
    return {**dict.fromkeys(ENV_KEYS), "SCHOOLMDM_API_URL": live.url, "SCHOOLMDM_API_TOKEN": ADMIN_TOKEN,
            "SCHOOLMDM_DATA_DIR": str(settings.data_dir), "SCHOOLMDM_DATABASE_URL": settings.database_url,
            "COLUMNS": "250"}


@pytest.fixture
def http(live, data_dir):
    ca = ssl.create_default_context(cafile=str(data_dir / "pki" / "ca.pem"))
    with httpx.Client(base_url=live.url, verify=ca) as c:
        yield c


def run(env: dict, *args: str, **overrides):
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(cli, list(args), env={**env, **overrides}, catch_exceptions=False)
    finally:
        get_settings.cache_clear()


def ok_json(env, *args, **overrides):
    r = run(env, *args, "--json", **overrides)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def enroll(client, school, n):
    return [TestDevice(client).enroll(school["id"], school["token"]) for _ in range(n)]


class Answering(threading.Thread):
    """Scripted iPads that answer each command they get: Acknowledged, or Error for the listed UDIDs."""

    def __init__(self, devices, fail=(), want=1):
        super().__init__(daemon=True)
        self.devices, self.fail, self.want, self.answered = devices, set(fail), want, {}

    def run(self):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(self.answered.get(d.udid, 0) < self.want for d in self.devices):
            for d in self.devices:
                got = d.command_of(d.connect("Idle"))
                if got:
                    status = "Error" if d.udid in self.fail else "Acknowledged"
                    d.connect(status, got[0])
                    self.answered[d.udid] = self.answered.get(d.udid, 0) + 1
            time.sleep(0.02)


def test_devices_list_search_show(env, client, school):
    a, b = enroll(client, school, 2)
    r = run(env, "devices", "list")
    assert r.exit_code == 0 and a.udid in r.stdout and b.udid in r.stdout and "2 of 2" in r.stdout
    assert ok_json(env, "devices", "list", "--school", school["id"])["total"] == 2
    r = run(env, "devices", "search", a.serial)
    assert r.exit_code == 0 and a.udid in r.stdout and b.udid not in r.stdout
    assert [d["udid"] for d in ok_json(env, "devices", "search", a.serial)["items"]] == [a.udid]
    r = run(env, "devices", "search", "NOTHING-LIKE-THIS")
    assert r.exit_code == 3 and "no device matches" in r.stderr
    r = run(env, "devices", "show", a.udid)
    assert r.exit_code == 0 and a.serial in r.stdout and "enrolled" in r.stdout
    shown = ok_json(env, "devices", "show", a.serial)
    assert shown["udid"] == a.udid and shown["enrollment_state"] == "enrolled"
    r = run(env, "devices", "show", "NOPE")
    assert r.exit_code == 3 and r.stderr.strip() == "error: no device 'NOPE' (not_found, HTTP 404)"


def test_command_queues_a_job_and_maps_errors_to_exit_codes(env, client, school, container):
    (dev,) = enroll(client, school, 1)
    out = ok_json(env, "command", "DeviceLock", "--device", dev.udid, "--param", "Message=Bitte abgeben",
                  "--param", "PhoneNumber=\"0301234\"")
    assert out["queued"] == 1 and out["request_type"] == "DeviceLock" and out["job"]["total"] == 1
    r = run(env, "command", "ProfileList", "--school", school["id"], "--role", "pupil")
    assert r.exit_code == 0 and "queued ProfileList" in r.stdout and "as job" in r.stdout
    assert run(env, "command", "DeviceLock", "--device", "NOPE").exit_code == 3
    bad = run(env, "command", "DeviceLock", "--device", dev.udid, "--param", "no-equals-sign")
    assert bad.exit_code == 2 and "KEY=VALUE" in bad.stderr
    assert run(env, "command", "DeviceLock", "--device", dev.udid, "--school", school["id"]).exit_code == 2
    assert run(env, "command", "DeviceLock", "--school", school["id"], "--role", "staff").exit_code == 2
    r = run(env, "command", "NoSuchCommand", "--device", dev.udid)
    assert r.exit_code == 2 and "unknown_message_type" in r.stderr
    r = run(env, "command", "RemoveProfile", "--device", dev.udid)
    assert r.exit_code == 2 and "Identifier" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    support = container.tokens.create("desk", "support", None, container.clock())
    r = run(env, "command", "EraseDevice", "--device", dev.udid, SCHOOLMDM_API_TOKEN=support)
    assert r.exit_code == 4 and "support role may not queue EraseDevice" in r.stderr
    assert run(env, "command", "SecurityInfo", "--device", dev.udid, "--token", support).exit_code == 0
    r = run(env, "devices", "list", SCHOOLMDM_API_TOKEN="wrong-token")
    assert r.exit_code == 4 and "unknown or revoked" in r.stderr and "wrong-token" not in r.output
    r = run(env, "devices", "list", SCHOOLMDM_API_TOKEN=None)
    assert r.exit_code == 4 and "SCHOOLMDM_API_TOKEN" in r.stderr


def test_connection_problems(env, data_dir, live):
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    r = run(env, "devices", "list", "--server", f"https://127.0.0.1:{port}")
    assert r.exit_code == 5 and "cannot reach" in r.stderr
    r = run(env, "devices", "list", "--ca-file", str(data_dir / "pki" / "push-ca.pem"))
    assert r.exit_code == 1 and "TLS verification" in r.stderr
    assert run(env, "devices", "list", "--ca-file", str(data_dir / "nope.pem")).exit_code == 2
    # the defaults: the settings' public URL, the development CA in the data directory
    r = run(env, "devices", "list", SCHOOLMDM_API_URL=None, SCHOOLMDM_PUBLIC_URL=live.url)
    assert r.exit_code == 0, r.output


def test_command_wait_follows_the_job_until_the_devices_acknowledge(env, http, school):
    devs = enroll(http, school, 3)
    answering = Answering(devs)
    answering.start()
    r = run(env, "command", "SecurityInfo", "--school", school["id"], "--wait", "--timeout", "60")
    answering.join()
    assert r.exit_code == 0, r.output
    assert "3/3" in r.stderr and "SecurityInfo" in r.stderr  # the progress bar
    assert "finished: acknowledged 3 of 3" in r.stdout
    answering = Answering(devs)
    answering.start()
    job = ok_json(env, "command", "ProfileList", "--school", school["id"], "--wait", "--timeout", "60")
    answering.join()
    assert job["state"] == "finished" and job["counts"]["acknowledged"] == 3 and job["progress"] == 1.0


def test_failures_exit_6_then_retry_and_job_devices(env, http, school):
    devs = enroll(http, school, 2)
    answering = Answering(devs, fail={devs[1].udid})
    answering.start()
    r = run(env, "command", "ProfileList", "--school", school["id"], "--wait", "--timeout", "60")
    answering.join()
    assert r.exit_code == 6 and "1 of 2 device(s) did not acknowledge" in r.stderr
    job_id = json.loads(run(env, "jobs", "list", "--json").stdout)["items"][0]["id"]
    failed = ok_json(env, "jobs", "devices", job_id, "--status", "error")
    assert [d["udid"] for d in failed["items"]] == [devs[1].udid]
    r = run(env, "jobs", "devices", job_id)
    assert r.exit_code == 0 and devs[0].udid in r.stdout and devs[1].udid in r.stdout
    answering = Answering([devs[1]])
    answering.start()
    r = run(env, "jobs", "retry", job_id, "--wait", "--timeout", "60")
    answering.join()
    assert r.exit_code == 0, r.output
    assert "retried 1 device(s)" in r.stdout and "acknowledged 2 of 2" in r.stdout
    r = run(env, "jobs", "show", job_id, "--follow")
    assert r.exit_code == 0 and "finished" in r.stdout


def test_jobs_list_show_cancel_retry(env, client, school):
    enroll(client, school, 2)
    job = ok_json(env, "command", "DeviceLock", "--school", school["id"])["job"]
    r = run(env, "jobs", "list")
    assert r.exit_code == 0 and job["id"] in r.stdout and "DeviceLock" in r.stdout and "0/2" in r.stdout
    assert ok_json(env, "jobs", "list", "--school", school["id"])["items"][0]["id"] == job["id"]
    r = run(env, "jobs", "show", job["id"])
    assert r.exit_code == 0 and "running" in r.stdout and "queued 2" in r.stdout
    assert ok_json(env, "jobs", "show", job["id"])["counts"]["queued"] == 2
    r = run(env, "jobs", "cancel", job["id"])
    assert r.exit_code == 0 and "cancelled 2 queued device(s)" in r.stdout
    assert ok_json(env, "jobs", "cancel", job["id"])["state"] == "cancelled"
    r = run(env, "jobs", "show", job["id"], "--follow", "--json")
    assert r.exit_code == 6 and json.loads(r.stdout)["state"] == "cancelled"
    r = run(env, "jobs", "retry", job["id"])
    assert r.exit_code == 2 and "cancelled job cannot be retried" in r.stderr
    assert run(env, "jobs", "show", "no-such-job").exit_code == 3
    assert run(env, "jobs", "cancel", "no-such-job").exit_code == 3
    second = ok_json(env, "command", "ProfileList", "--school", school["id"])["job"]
    assert ok_json(env, "jobs", "retry", second["id"])["retried"] == 0
    r = run(env, "jobs", "show", second["id"], "--follow", "--timeout", "0")
    assert r.exit_code == 1 and "still running" in r.stderr


def test_tokens_are_printed_once_on_create_and_never_again(env, container):
    r = run(env, "tokens", "create", "desk-anna", "--role", "support")
    assert r.exit_code == 0 and "not shown again" in r.stdout
    token = next(line for line in r.stdout.splitlines() if line.startswith("smdm_"))
    assert container.tokens.resolve(token, container.clock())["role"] == "support"
    created = ok_json(env, "tokens", "create", "tech-gs", "--role", "technician", "--school", "gs-nord")
    assert created["token"].startswith("smdm_") and created["schools"] == ["gs-nord"]
    listed = run(env, "tokens", "list")
    assert listed.exit_code == 0 and "desk-anna" in listed.stdout and "tech-gs" in listed.stdout
    items = ok_json(env, "tokens", "list")["items"]
    assert {t["name"] for t in items} == {"admin", "desk-anna", "tech-gs"}
    everything = listed.output + json.dumps(items)
    assert token not in everything and created["token"] not in everything and ADMIN_TOKEN not in everything
    help_text = run(env, "tokens", "list", "--help").output
    assert ADMIN_TOKEN not in help_text and "SCHOOLMDM_API_TOKEN" in help_text
    assert run(env, "tokens", "list", SCHOOLMDM_API_TOKEN=token).exit_code == 4  # support is not admin
    assert run(env, "devices", "list", SCHOOLMDM_API_TOKEN=token).exit_code == 0
    r = run(env, "tokens", "revoke", "desk-anna")
    assert r.exit_code == 0 and "revoked desk-anna" in r.stdout and token not in r.output
    assert ok_json(env, "tokens", "revoke", "tech-gs")["revoked"] is True
    assert run(env, "devices", "list", SCHOOLMDM_API_TOKEN=token).exit_code == 4
    assert run(env, "tokens", "revoke", "desk-anna").exit_code == 3
    assert run(env, "tokens", "create", "admin", "--role", "admin").exit_code == 2  # the name exists
    assert run(env, "tokens", "create", "x", "--role", "janitor").exit_code == 2


def test_audit_log(env, client, school, container):
    enroll(client, school, 1)
    job = ok_json(env, "command", "DeviceLock", "--school", school["id"])["job"]
    run(env, "jobs", "cancel", job["id"])
    r = run(env, "audit")
    assert r.exit_code == 0 and "queue:DeviceLock" in r.stdout and "job:cancel" in r.stdout
    only = ok_json(env, "audit", "--action", "job:cancel")
    assert only["total"] == 1 and only["items"][0]["target"] == job["id"]
    assert ok_json(env, "audit", "--actor", "nobody")["total"] == 0
    support = container.tokens.create("desk", "support", None, container.clock())
    assert run(env, "audit", SCHOOLMDM_API_TOKEN=support).exit_code == 4


def test_push_profile(env, http, school, container):
    from profiles.wifi_profile import wifi_psk_profile

    devs = enroll(http, school, 2)
    payload = wifi_psk_profile(school["id"], "Test City Schools", "GS-Nord", "Pausenbrot2026!")
    container.profiles.store(school_id=school["id"], role="pupil", name="wifi", payload=payload)
    out = ok_json(env, "push-profile", "wifi", "--school", school["id"])
    assert out["queued"] == 2 and out["profile"] == payload["PayloadIdentifier"] and out["version"] == 1
    answering = Answering(devs, want=2)  # the first push, then the forced one
    answering.start()
    r = run(env, "push-profile", "wifi", "--school", school["id"], "--role", "pupil", "--force", "--wait",
            "--timeout", "60")
    answering.join()
    assert r.exit_code == 0, r.output
    assert f"queued {payload['PayloadIdentifier']} v1 for 2 device(s)" in r.stdout and "2/2" in r.stderr
    r = run(env, "push-profile", "nope", "--school", school["id"])
    assert r.exit_code == 3 and "it has: wifi" in r.stderr
    assert run(env, "push-profile", "wifi", "--school", school["id"], "--role", "teacher").exit_code == 3
    assert run(env, "push-profile", "wifi", "--school", "no-such-school").exit_code == 3


def test_admin_token_bootstraps_the_first_admin_locally(env, container):
    r = run(env, "admin-token", "it-admin", "--role", "admin", SCHOOLMDM_API_TOKEN=None)
    assert r.exit_code == 0, r.output
    token = next(line for line in r.stdout.splitlines() if line.startswith("smdm_"))
    assert run(env, "tokens", "list", SCHOOLMDM_API_TOKEN=token).exit_code == 0
    out = ok_json(env, "admin-token", "helpdesk", "--role", "support")
    assert container.tokens.resolve(out["token"], container.clock())["role"] == "support"
    assert run(env, "admin-token", "it-admin").exit_code == 2  # exists
    assert run(env, "admin-token", "other", "--role", "root").exit_code == 2
    assert container.audit.list(action="token:create")["total"] == 2


def test_following_a_job_rides_out_a_short_outage(monkeypatch):
    monkeypatch.setattr(cli_jobs, "POLL_SECONDS", 0)
    counts = dict.fromkeys(("queued", "sent", "acknowledged", "error", "not_now", "cancelled", "expired"), 0)
    running = {"id": "j1", "request_type": "ProfileList", "total": 1, "state": "running",
               "counts": {**counts, "queued": 1}}
    finished = {**running, "state": "finished", "counts": {**counts, "acknowledged": 1}}

    class Api:
        def __init__(self, *replies):
            self.replies = list(replies)

        def get(self, url):
            reply = self.replies.pop(0)
            if isinstance(reply, Exception):
                raise reply
            return reply

    down = CliError("cannot reach the server", 5)
    assert cli_jobs.follow(Api(down, down, running, finished), running) == finished
    monkeypatch.setattr(cli_jobs, "UNREACHABLE_GRACE", -1)
    with pytest.raises(CliError) as e:
        cli_jobs.follow(Api(down, finished), running)
    assert e.value.exit_code == 5
    with pytest.raises(CliError) as e:  # anything but unavailable ends following at once
        cli_jobs.follow(Api(CliError("no job", 3), finished), running)
    assert e.value.exit_code == 3


def test_server_processes_get_two_malloc_arenas_unless_set():
    from app.cli.ops import server_environ

    assert server_environ({"PATH": "/bin"}) == {"PATH": "/bin", "MALLOC_ARENA_MAX": "2"}
    assert server_environ({"MALLOC_ARENA_MAX": "8"})["MALLOC_ARENA_MAX"] == "8"
