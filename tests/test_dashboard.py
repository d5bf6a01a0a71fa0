"""The dashboard for people: token login, pages per role, school scoping, CSRF, refusals, search."""

from __future__ import annotations

import datetime as dt
import re
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, insert

from app.db.models import Device, DeviceProfile
from app.services.enrollment import hash_secret
from mdm.checkin import build_checkin
from profiles.wifi_profile import wifi_psk_profile
from tests.conftest import ADMIN_TOKEN
from tests.support.device import TestDevice

CHAIN = [{"ErrorCode": 12021, "ErrorDomain": "MCMDMErrorDomain", "LocalizedDescription": "Kein Speicher <frei>"}]


class _Tables(HTMLParser):
    """Cell texts of every table with an id: {id: [[cell, ...], ...]}."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._id = self._row = self._cell = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._id = dict(attrs).get("id")
            self.tables.setdefault(self._id, [])
        elif tag == "tr" and self._id is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[self._id].append(self._row)
            self._row = None
        elif tag == "table":
            self._id = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def table(html: str, table_id: str) -> list[list[str]]:
    p = _Tables()
    p.feed(html)
    return p.tables[table_id]


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([0-9a-f]{64})"', html).group(1)


def login(app, token: str) -> TestClient:
    """A fresh browser-like client, logged in with ``token`` through the login form."""
    b = TestClient(app, base_url="https://testserver")
    page = b.get("/login?next=/")
    nonce = re.search(r'name="login_csrf" value="([^"]+)"', page.text).group(1)
    r = b.post("/login", data={"token": token, "login_csrf": nonce, "next": "/"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/", r.text
    return b


@pytest.fixture
def city(client, container, school):
    """gs-nord with 3 enrolled iPads (one that failed a command) and one that checked out; 'other' with one."""
    c = container
    c.schools.upsert("other", "Other School", hash_secret("t2"), c.clock())
    devs = [TestDevice(client).enroll(school["id"], school["token"]) for _ in range(4)]
    devs[3].checkin(build_checkin("CheckOut", devs[3].udid, Topic=devs[3].topic))
    other = TestDevice(client).enroll("other", "t2")
    tokens = {"admin": ADMIN_TOKEN,
              "technician": c.tokens.create("tech", "technician", None, c.clock()),
              "support": c.tokens.create("desk", "support", None, c.clock()),
              "scoped": c.tokens.create("nord-tech", "technician", [school["id"]], c.clock())}
    api = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    job = client.post("/api/v1/commands", headers=api,
                      json={"request_type": "ProfileList", "school": school["id"]}).json()
    for d in devs[:3]:
        d.connect("Idle")
    devs[0].connect("Acknowledged", job["command_uuid"], ProfileList=[])
    devs[1].connect("Error", job["command_uuid"], ErrorChain=CHAIN)
    return {"devs": devs, "other": other, "tokens": tokens, "job": job["job"]["id"], "school": school["id"]}


def test_unauthenticated_pages_redirect_to_login(app, client, container, city):
    d = city["devs"][0]
    for path in ("/", f"/schools/{city['school']}", f"/devices/{d.udid}", f"/jobs/{city['job']}", "/search?q=x"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login"), path
    assert client.get(f"/devices/{d.udid}", follow_redirects=False).headers["location"] == \
        f"/login?next=%2Fdevices%2F{d.udid}"
    r = client.post(f"/devices/{d.udid}/commands", data={"request_type": "EraseDevice"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert client.get("/static/dashboard.css").status_code == 200
    revoked = login(app, city["tokens"]["support"])
    container.tokens.revoke("desk", container.clock())
    assert revoked.get("/", follow_redirects=False).headers["location"] == "/login"


def test_login_cookie_and_logout(app, client, city, data_dir):
    page = client.get("/login")
    nonce = re.search(r'name="login_csrf" value="([^"]+)"', page.text).group(1)
    bad = client.post("/login", data={"token": "nope", "login_csrf": nonce})
    assert bad.status_code == 401 and "unknown or revoked" in bad.text
    stale = TestClient(app, base_url="https://testserver").post(
        "/login", data={"token": ADMIN_TOKEN, "login_csrf": nonce})
    assert stale.status_code == 403 and "expired" in stale.text  # no login cookie: a cross-site form
    r = client.post("/login", data={"token": city["tokens"]["support"], "login_csrf": nonce,
                                    "next": "//evil.example/x"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("schoolmdm_token="))
    assert all(flag in cookie for flag in ("HttpOnly", "Secure", "SameSite=strict", "Path=/"))
    home = client.get("/")
    assert home.status_code == 200 and "desk" in home.text
    assert home.headers["content-security-policy"].startswith("default-src 'self'")
    assert client.post("/logout", follow_redirects=False).status_code == 403  # no CSRF token
    out = client.post("/logout", data={"csrf": csrf_of(home.text)}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert client.get("/", follow_redirects=False).status_code == 303
    assert (data_dir / "dashboard-csrf.key").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("role", ["admin", "technician", "support"])
def test_every_page_renders(app, city, role):
    b = login(app, city["tokens"][role])
    d = city["devs"][1]
    home = b.get("/")
    assert home.status_code == 200
    rows = {r[0].split()[0]: r for r in table(home.text, "schools")[1:-1]}
    assert rows["Grundschule"][1:6] == ["3", "0", "0", "1", "4"]  # enrolled, authenticated, pending, unenrolled, total
    assert rows["Other"][1] == "1"
    running = table(home.text, "running")
    assert running[1][0] == "ProfileList" and running[1][-1] == "3"
    failures = table(home.text, "failures")
    assert failures[1][1].startswith(d.serial) and "12021: Kein Speicher <frei>" in failures[1][5]
    school = b.get(f"/schools/{city['school']}")
    assert school.status_code == 200 and "3 / 4" in school.text
    assert {r[0] for r in table(school.text, "devices")[1:]} == {x.serial for x in city["devs"]}
    device = b.get(f"/devices/{d.udid}")
    assert device.status_code == 200 and d.serial in device.text
    cmds = table(device.text, "commands")
    assert cmds[1][0].startswith("ProfileList") and cmds[1][1] == "error"
    assert "queued" in cmds[1][5] and "sent" in cmds[1][5] and "MCMDMErrorDomain 12021" in cmds[1][5]
    assert "Kein Speicher &lt;frei&gt;" in device.text
    assert [r[0] for r in table(device.text, "enrollment")[1:]]
    job = b.get(f"/jobs/{city['job']}")
    assert job.status_code == 200 and 'data-count="acknowledged">1<' in job.text
    assert ('data-action="retry"' in job.text) == (role != "support")
    assert b.get("/search?q=DMP").status_code == 200


def test_actions_follow_the_role_and_queue_through_the_job_service(app, container, city):
    d = city["devs"][0]
    support = login(app, city["tokens"]["support"])
    page = support.get(f"/devices/{d.udid}").text
    offered = set(re.findall(r'data-action="(\w+)"', page))
    assert {"DeviceInformation", "DeviceLock", "PlayLostModeSound", "ProfileList", "SecurityInfo"} <= offered
    assert not offered & {"EraseDevice", "RestartDevice", "RemoveProfile"}
    r = support.post(f"/devices/{d.udid}/commands",
                     data={"csrf": csrf_of(page), "request_type": "DeviceLock", "message": "Bitte ins Sekretariat"},
                     follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/jobs/")
    job = container.jobs.get(r.headers["location"].rsplit("/", 1)[1])
    assert job["request_type"] == "DeviceLock" and job["total"] == 1 and job["created_by"] == "desk"
    got, cmd = d.command_of(d.connect("Idle"))
    assert cmd["RequestType"] == "DeviceLock" and cmd["Message"] == "Bitte ins Sekretariat"
    assert container.audit.list(action="queue:DeviceLock")["items"][0]["actor"] == "desk"

    tech = login(app, city["tokens"]["technician"])
    page = tech.get(f"/devices/{d.udid}").text
    assert {"EraseDevice", "RestartDevice"} <= set(re.findall(r'data-action="(\w+)"', page))
    no = tech.post(f"/devices/{d.udid}/commands", data={"csrf": csrf_of(page), "request_type": "EraseDevice",
                                                         "confirm": "wrong"})
    assert no.status_code == 422 and "serial number" in no.text
    ok = tech.post(f"/devices/{d.udid}/commands", data={"csrf": csrf_of(page), "request_type": "EraseDevice",
                                                         "confirm": d.serial.lower()}, follow_redirects=False)
    assert ok.status_code == 303
    gone = tech.post(f"/devices/{city['devs'][3].udid}/commands",
                     data={"csrf": csrf_of(page), "request_type": "DeviceInformation"})
    assert gone.status_code == 409 and "not enrolled" in gone.text


def test_support_is_refused_erase_device(app, container, city):
    d = city["devs"][2]
    support = login(app, city["tokens"]["support"])
    page = support.get(f"/devices/{d.udid}").text
    assert 'data-action="EraseDevice"' not in page and "Not for the support role: " in page
    r = support.post(f"/devices/{d.udid}/commands", data={"csrf": csrf_of(page), "request_type": "EraseDevice",
                                                           "confirm": d.serial})
    assert r.status_code == 403 and r.headers["content-type"].startswith("text/html")
    assert "the support role may not queue EraseDevice" in r.text and "support-desk" not in r.text
    assert "desk · <strong>support</strong>" in r.text  # the usual header, with logout
    cancel = support.post(f"/jobs/{city['job']}/cancel", data={"csrf": csrf_of(page)})
    assert cancel.status_code == 403 and "technician role" in cancel.text
    assert [c["request_type"] for c in container.devices.get(d.udid)["commands"]] == ["ProfileList"]
    assert container.jobs.get(city["job"])["cancelled_at"] is None


def test_posts_need_the_sessions_csrf_token(app, container, city):
    d = city["devs"][0]
    tech = login(app, city["tokens"]["technician"])
    other_session = login(app, city["tokens"]["technician"])
    foreign = csrf_of(other_session.get("/").text)
    for data in ({"request_type": "DeviceInformation"},
                 {"request_type": "DeviceInformation", "csrf": "0" * 64},
                 {"request_type": "DeviceInformation", "csrf": foreign}):  # same token, another login
        r = tech.post(f"/devices/{d.udid}/commands", data=data)
        assert r.status_code == 403 and "security token" in r.text
    assert tech.post(f"/jobs/{city['job']}/cancel", data={"csrf": foreign}).status_code == 403
    assert [c["request_type"] for c in container.devices.get(d.udid)["commands"]] == ["ProfileList"]
    assert container.jobs.get(city["job"])["cancelled_at"] is None


def test_cancel_and_retry_from_the_job_page(app, container, city):
    tech = login(app, city["tokens"]["technician"])
    page = tech.get(f"/jobs/{city['job']}").text
    r = tech.post(f"/jobs/{city['job']}/retry", data={"csrf": csrf_of(page)}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/jobs/{city['job']}"
    j = container.jobs.get(city["job"])
    assert j["counts"]["error"] == 0 and j["counts"]["queued"] == 1 and j["counts"]["sent"] == 1
    page = tech.get(f"/jobs/{city['job']}").text
    assert 'data-action="cancel"' in page
    tech.post(f"/jobs/{city['job']}/cancel", data={"csrf": csrf_of(page)})
    assert container.jobs.get(city["job"])["state"] == "cancelled"
    again = tech.post(f"/jobs/{city['job']}/retry", data={"csrf": csrf_of(page)})
    assert again.status_code == 409 and "cancelled job" in again.text


def test_school_scoped_token_sees_only_its_schools(app, container, city):
    other = city["other"]
    b = login(app, city["tokens"]["scoped"])
    home = b.get("/").text
    assert [r[0].split()[0] for r in table(home, "schools")[1:-1]] == ["Grundschule"]
    assert b.get("/schools/other").status_code == 403
    assert b.get(f"/devices/{other.udid}").status_code == 404
    assert b.get(f"/search?q={other.serial}", follow_redirects=False).status_code == 200
    theirs = container.jobs.submit(*_command("SecurityInfo", other.udid, "other"), actor="admin")
    assert b.get(f"/jobs/{theirs['id']}").status_code == 404
    csrf = csrf_of(home)
    r = b.post(f"/devices/{other.udid}/commands", data={"csrf": csrf, "request_type": "DeviceInformation"})
    assert r.status_code == 404
    mine = b.post(f"/devices/{city['devs'][0].udid}/commands", data={"csrf": csrf, "request_type": "SecurityInfo"},
                  follow_redirects=False).headers["location"]
    assert b.get(mine).status_code == 200
    # the job page polls the JSON API with the session cookie
    polled = b.get("/api/v1" + mine)
    assert polled.status_code == 200 and polled.json()["counts"]["queued"] == 1


def _command(request_type: str, udid: str, school_id: str):
    from app.services.commands import Target
    from mdm.commands import new_command

    return new_command(request_type), Target(udids=(udid,), school_id=school_id)


def test_search_redirects_on_a_single_exact_match(app, container, city):
    b = login(app, city["tokens"]["support"])
    d = city["devs"][0]
    for q in (d.serial, d.serial.lower(), d.udid, f"  {d.udid.lower()} "):
        r = b.get("/search", params={"q": q}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == f"/devices/{d.udid}", q
    many = b.get("/search", params={"q": "DMP"}, follow_redirects=False)
    assert many.status_code == 200 and len(table(many.text, "results")) == 1 + 5
    same_name = b.get("/search", params={"q": "iPad"})  # every test iPad is named "iPad <serial>"
    assert same_name.status_code == 200 and len(table(same_name.text, "results")) == 6
    none = b.get("/search", params={"q": "<b>nothing</b>"})
    assert "No device matches “&lt;b&gt;nothing&lt;/b&gt;”" in none.text


def test_refusals_are_html_pages_never_500(app, city):
    b = login(app, city["tokens"]["admin"])
    for path, status in (("/devices/NOPE", 404), ("/jobs/nope", 404), ("/schools/nope", 404),
                         ("/schools/gs-nord?offset=-1", 422)):
        r = b.get(path)
        assert r.status_code == status and r.headers["content-type"].startswith("text/html"), path
    csrf = csrf_of(b.get("/").text)
    r = b.post(f"/devices/{city['devs'][0].udid}/commands", data={"csrf": csrf, "request_type": "NoSuchThing"})
    assert r.status_code == 400 and "unknown RequestType" in r.text, r.text


def test_rollout_counts_latest_profile_versions(app, container, city):
    c, school = container, city["school"]
    payload = wifi_psk_profile(school, c.settings.org_name, "Nord", "Pausenbrot2026!")
    old = c.profiles.store(school_id=school, role=None, name="wifi", payload=payload)
    new = c.profiles.store(school_id=school, role=None, name="wifi",
                           payload=wifi_psk_profile(school, c.settings.org_name, "Nord", "Neu2026!"))
    assert new.version == 2
    now = c.clock()
    rows = [(city["devs"][0], new.content_hash), (city["devs"][1], new.content_hash), (city["devs"][2], old.content_hash),
            (city["devs"][3], new.content_hash)]  # the last one is unenrolled: not counted
    with c.sessions.begin() as s:
        s.execute(insert(DeviceProfile), [{"udid": d.udid, "identifier": new.identifier, "content_hash": h,
                                           "source": "acknowledged", "updated_at": now} for d, h in rows])
    page = login(app, city["tokens"]["support"]).get(f"/schools/{school}").text
    rollout = table(page, "rollout")
    assert rollout[1][2] == "v2" and rollout[1][3] == "2 / 3 (67 %)" and rollout[1][4] == "3"
    assert "2 versions" in page


def test_pages_stay_bounded_with_many_devices(app, container, city):
    """Counts come from GROUP BY and tables are paginated: more devices, same number of statements."""
    b = login(app, city["tokens"]["admin"])
    pages = ("/", f"/schools/{city['school']}", f"/schools/{city['school']}?sort=serial&desc=true&offset=50")

    def statements() -> list[int]:
        seen: list[str] = []
        listener = lambda *a: seen.append(a[2])  # noqa: E731
        event.listen(container.engine, "before_cursor_execute", listener)
        try:
            out = []
            for p in pages:
                before = len(seen)
                assert b.get(p).status_code == 200
                out.append(len(seen) - before)
            return out
        finally:
            event.remove(container.engine, "before_cursor_execute", listener)

    few = statements()
    now = dt.datetime.now(dt.timezone.utc)
    with container.sessions.begin() as s:
        s.execute(insert(Device), [{"udid": f"BULK-{i:05d}", "serial": f"ZZ{i:05d}", "school_id": city["school"],
                                    "enrollment_state": "enrolled", "device_name": f"Pupil {i}", "created_at": now}
                                   for i in range(1500)])
    assert statements() == few
    page = b.get(f"/schools/{city['school']}?sort=serial&desc=true").text
    devices = table(page, "devices")
    assert len(devices) == 1 + 50 and devices[1][0] == "ZZ01499"
    assert "1–50 of 1504" in page and "offset=50" in page
    home = table(b.get("/").text, "schools")
    assert home[-1][1] == str(1500 + 4)
