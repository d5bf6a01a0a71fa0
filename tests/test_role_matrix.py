"""Every /api/v1 route against every role: no token, support, technician, admin, and a token scoped
to another school. A route missing from the table fails the test, so new routes get checked too."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest

from app.services.commands import Target
from app.services.enrollment import hash_secret
from mdm.commands import new_command
from tests.support.device import TestDevice

CITY = Path(__file__).resolve().parents[1] / "examples" / "city"
ROSTER = Path(__file__).resolve().parents[1] / "examples" / "roster"
ROLES = ("support", "technician", "admin")
RANK = {"none": 0, "support": 1, "technician": 2, "admin": 3}

# (method, path) -> (least role, school-scoped: does a token of another school get refused?, request maker)
# request makers get the world dict and the role name and return (path, kwargs for the client)


def _p(path):
    return lambda w, role: (path.format(**w), {})


def _json(path, body):
    return lambda w, role: (path.format(**w), {"json": body(w, role) if callable(body) else body})


ROUTES = {
    ("GET", "/api/v1/devices"): ("support", False, _p("/api/v1/devices")),
    ("GET", "/api/v1/devices/{udid}"): ("support", True, _p("/api/v1/devices/{udid}")),
    ("POST", "/api/v1/commands"): ("support", True, _json("/api/v1/commands", lambda w, r: {
        "request_type": "DeviceInformation", "devices": [w["udid"]]})),
    ("GET", "/api/v1/commands/{command_uuid}"): ("support", False, _p("/api/v1/commands/{command_uuid}")),
    ("GET", "/api/v1/jobs"): ("support", False, _p("/api/v1/jobs")),
    ("GET", "/api/v1/jobs/{job_id}"): ("support", True, _p("/api/v1/jobs/{job_id}")),
    ("GET", "/api/v1/jobs/{job_id}/devices"): ("support", True, _p("/api/v1/jobs/{job_id}/devices")),
    ("POST", "/api/v1/jobs/{job_id}/cancel"): ("technician", True, _p("/api/v1/jobs/{job_id}/cancel")),
    ("POST", "/api/v1/jobs/{job_id}/retry"): ("technician", True, _p("/api/v1/jobs/{retry_job_id}/retry")),
    ("GET", "/api/v1/schools"): ("support", False, _p("/api/v1/schools")),
    ("POST", "/api/v1/schools"): ("admin", True, _json("/api/v1/schools", lambda w, r: {
        "id": f"new-{r}", "name": "Neue Schule"})),
    ("POST", "/api/v1/schools/{school_id}/enroll-url"): ("admin", True, _p("/api/v1/schools/{school_id}/enroll-url")),
    ("GET", "/api/v1/schools/{school_id}/profiles"): ("support", True, _p("/api/v1/schools/{school_id}/profiles")),
    ("GET", "/api/v1/profiles/{profile_id}/download"): ("support", True, _p("/api/v1/profiles/{profile_id}/download")),
    ("POST", "/api/v1/profiles/{profile_id}/push"): ("technician", True, _json("/api/v1/profiles/{profile_id}/push", {})),
    ("GET", "/api/v1/schools/{school_id}/blueprint"): ("support", True, _p("/api/v1/schools/{school_id}/blueprint")),
    ("GET", "/api/v1/schools/{school_id}/blueprint/diff"): ("support", True,
                                                             _p("/api/v1/schools/{school_id}/blueprint/diff")),
    ("GET", "/api/v1/schools/{school_id}/blueprint/plan"): ("support", True,
                                                             _p("/api/v1/schools/{school_id}/blueprint/plan")),
    ("POST", "/api/v1/schools/{school_id}/blueprint/push"): ("technician", True, _json(
        "/api/v1/schools/{school_id}/blueprint/push", {})),
    ("GET", "/api/v1/tokens"): ("admin", False, _p("/api/v1/tokens")),
    ("POST", "/api/v1/tokens"): ("admin", False, _json("/api/v1/tokens", lambda w, r: {
        "name": f"t-{r}-{uuid.uuid4().hex[:6]}", "role": "support"})),
    ("DELETE", "/api/v1/tokens/{name}"): ("admin", False, lambda w, r: (f"/api/v1/tokens/victim-{r}", {})),
    ("GET", "/api/v1/audit"): ("admin", False, _p("/api/v1/audit")),
    ("GET", "/api/v1/webhooks"): ("admin", False, _p("/api/v1/webhooks")),
    ("POST", "/api/v1/webhooks"): ("admin", False, _json("/api/v1/webhooks", lambda w, r: {
        "name": f"hook-{r}-{uuid.uuid4().hex[:6]}", "url": "https://hooks.example.org/x", "events": ["*"]})),
    ("GET", "/api/v1/webhooks/deliveries"): ("admin", False, _p("/api/v1/webhooks/deliveries")),
    ("DELETE", "/api/v1/webhooks/{name}"): ("admin", False, lambda w, r: (f"/api/v1/webhooks/hook-victim-{r}", {})),
    # roster, rollout and loans
    ("GET", "/api/v1/roster/pupils"): ("support", False, _p("/api/v1/roster/pupils")),
    ("GET", "/api/v1/schools/{school_id}/classes"): ("support", True, _p("/api/v1/schools/{school_id}/classes")),
    ("GET", "/api/v1/waves"): ("support", False, _p("/api/v1/waves")),
    ("POST", "/api/v1/waves"): ("technician", True, _json("/api/v1/waves", lambda w, r: {
        "name": f"wave-{r}", "csv": f"SERIALW{RANK.get(r, 9)}X", "school": w["school_id"]})),
    ("GET", "/api/v1/waves/{wave_id}"): ("support", False, _p("/api/v1/waves/{wave_id}")),
    ("GET", "/api/v1/rollout"): ("support", False, _p("/api/v1/rollout")),
    ("PUT", "/api/v1/rollout/schools/{school_id}"): ("admin", True, _json(
        "/api/v1/rollout/schools/{school_id}", {"priority": 1, "planned": 30})),
    ("GET", "/api/v1/loans"): ("support", False, _p("/api/v1/loans")),
    ("POST", "/api/v1/loans"): ("support", True, _json("/api/v1/loans", lambda w, r: {
        "udid": w["lend"][r][0], "pupil": w["lend"][r][1]})),
    ("GET", "/api/v1/loans/{loan_id}"): ("support", True, _p("/api/v1/loans/{loan_id}")),
    ("POST", "/api/v1/loans/{loan_id}/return"): ("support", True, lambda w, r: (
        f"/api/v1/loans/{w['give_back'][r]}/return", {"json": {}})),
}
EXTRA_ROUTES: dict = {}  # routes added by other modules register here (see below)
PEOPLE = tuple(f"S-10000{i}" for i in range(1, 9))


def api_routes(app) -> set[tuple[str, str]]:
    out = set()
    for path, ops in app.openapi()["paths"].items():
        if path.startswith("/api/v1/"):
            out |= {(m.upper(), path) for m in ops}
    return out


@pytest.fixture
def world(container, client, tmp_path):
    city = tmp_path / "city"
    shutil.copytree(CITY, city)
    container.blueprints.import_dir(city, actor="test")
    container.schools.upsert("gs-lindenhof", "Grundschule Am Lindenhof", hash_secret("t"), container.clock())
    dev = TestDevice(client).enroll("gs-lindenhof", "t")
    container.roster.import_path(ROSTER, actor="test")
    who = (*ROLES, "other-school")  # an anonymous request reuses the other school's (both are refused)
    spare = [TestDevice(client).enroll("gs-lindenhof", "t").udid for _ in range(2 * len(who))]
    lend = {r: (spare[i], PEOPLE[i]) for i, r in enumerate(who)}
    give_back = {}
    for i, r in enumerate(who):
        loan = container.loans.lend(device=spare[len(who) + i], pupil=PEOPLE[len(who) + i], actor="test")
        give_back[r] = loan["id"]
    lend["anon"], give_back["anon"] = lend["other-school"], give_back["other-school"]
    wave = container.waves.create("wave-0", "SERIALW0X", actor="test", default_school="gs-lindenhof")
    tokens = {r: container.tokens.create(f"matrix-{r}", r, None, container.clock()) for r in ROLES}
    tokens["other-school"] = container.tokens.create("matrix-other", "admin", ["gy-schiller"], container.clock())
    for r in (*ROLES, "other-school"):
        container.tokens.create(f"victim-{r}", "support", None, container.clock())
        container.webhooks.create(f"hook-victim-{r}", "https://hooks.example.org/v", ["*"], container.clock())
    job = container.jobs.submit(new_command("ProfileList"), Target(udids=(dev.udid,)), actor="test")
    retry_job = container.jobs.submit(new_command("SecurityInfo"), Target(udids=(dev.udid,)), actor="test")
    profile = next(p for p in container.profiles.list("gs-lindenhof")
                   if p["role"] == "pupil" and p["name"] == "restrictions")  # no secrets in it
    return {"udid": dev.udid, "school_id": "gs-lindenhof", "job_id": job["id"], "retry_job_id": retry_job["id"],
            "profile_id": profile["id"], "lend": lend, "give_back": give_back, "wave_id": wave["id"],
            "loan_id": give_back["admin"],
            "command_uuid": container.devices.get(dev.udid)["commands"][0]["command_uuid"], "tokens": tokens,
            "name": "victim"}


def test_every_api_route_is_in_the_matrix(app):
    missing = api_routes(app) - set(ROUTES) - set(EXTRA_ROUTES)
    assert not missing, f"add these routes to the role matrix: {sorted(missing)}"


def test_role_matrix(app, client, world):
    table = {**ROUTES, **EXTRA_ROUTES}
    failures = []
    for (method, path), (least, scoped, make) in sorted(table.items()):
        url, kw = make(world, "anon")
        r = client.request(method, url, **kw)
        if r.status_code != 401:
            failures.append(f"{method} {path} without a token: {r.status_code}")
        for role in (*ROLES, "other-school"):
            url, kw = make(world, role)
            r = client.request(method, url, headers={"Authorization": f"Bearer {world['tokens'][role]}"}, **kw)
            if role == "other-school":
                if scoped and r.status_code not in (403, 404):
                    failures.append(f"{method} {path} from another school's token: {r.status_code}")
                continue
            allowed = RANK[role] >= RANK[least]
            if allowed and r.status_code >= 400:
                failures.append(f"{method} {path} as {role}: {r.status_code} {r.text[:200]}")
            if not allowed and r.status_code != 403:
                failures.append(f"{method} {path} as {role} should be 403, got {r.status_code}")
    assert not failures, "\n".join(failures)


def test_support_cannot_download_profiles_with_secrets(client, container, world):
    wifi = next(p for p in container.profiles.list("gs-lindenhof") if p["role"] == "pupil" and p["name"] == "wifi")
    url = f"/api/v1/profiles/{wifi['id']}/download"
    r = client.get(url, headers={"Authorization": f"Bearer {world['tokens']['support']}"})
    assert r.status_code == 403
    r = client.get(url, headers={"Authorization": f"Bearer {world['tokens']['technician']}"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-apple-aspen-config")
