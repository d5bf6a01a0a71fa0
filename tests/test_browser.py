"""The dashboard in Debian's chromium (Playwright), against the real server and a running fleet.

The server (uvicorn, HTTPS), the mock APNs and a simulated fleet of iPads run as in
test_e2e_fleet.py; the fleet's asyncio loop runs in a background thread, so the iPads
answer pushes while the browser works. Screenshots of each step go to
``test-artifacts/browser/``.
"""

from __future__ import annotations

import asyncio
import re
import threading
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from app.container import Container
from app.main import create_app
from app.services.enrollment import hash_secret
from simulator.fleet import Fleet
from simulator.mock_apns import MockAPNsThread
from tests.support.db import truncate_all
from tests.support.live import LiveServer, free_socket

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "browser"
SCHOOL, N = "gs-nord", 5

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"Debian's chromium is not installed at {CHROMIUM} (apt-get install chromium)"),
]


class FleetThread:
    """A simulated fleet on its own event loop in a daemon thread; its push listener can be paused."""

    def __init__(self, ca: str, apns: str, push_ca: str) -> None:
        self.ca, self.apns, self.push_ca = ca, apns, push_ca
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fleet", daemon=True)
        self.fleet: Fleet | None = None
        self.listener: asyncio.Task | None = None

    def run(self, coro, timeout: float = 120.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self, server: str, n: int) -> Fleet:
        self.thread.start()

        async def go() -> Fleet:
            self.fleet = Fleet(ca_file=self.ca)
            self.listener = asyncio.create_task(self.fleet.listen(self.apns, self.push_ca))
            await self.fleet.enroll_all(n, server, SCHOOL, "t0ken")
            return self.fleet

        return self.run(go())

    def pause(self) -> None:
        """Stop reading the APNs feed; pushes that arrive meanwhile are read on resume."""
        async def stop() -> None:
            self.listener.cancel()
            await asyncio.gather(self.listener, return_exceptions=True)

        self.run(stop())

    def resume(self) -> None:
        async def go() -> None:
            self.listener = asyncio.create_task(self.fleet.listen(self.apns, self.push_ca))

        self.run(go())

    def close(self) -> None:
        async def stop() -> None:
            if self.listener is not None:
                self.listener.cancel()
                await asyncio.gather(self.listener, return_exceptions=True)
            if self.fleet is not None:
                await self.fleet.drain(timeout=10.0)
                await self.fleet.aclose()

        if self.thread.is_alive():
            self.run(stop())
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture
def world(settings, data_dir):
    pkidir = data_dir / "pki"
    with MockAPNsThread(str(pkidir / "apns-server.pem"), str(pkidir / "apns-server.key"),
                        str(pkidir / "push-ca.pem")) as apns_port:
        sock = free_socket()
        port = sock.getsockname()[1]
        apns = f"https://127.0.0.1:{apns_port}"
        s = settings.model_copy(update={
            "public_url": f"https://127.0.0.1:{port}", "apns_url": apns,
            "apns_ca_file": pkidir / "push-ca.pem", "push_interval_seconds": 0.05})
        c = Container(s)
        truncate_all(c.engine)
        c.schools.upsert(SCHOOL, "Grundschule Nord", hash_secret("t0ken"), c.clock())
        app = create_app(s, container=c, background=True)
        with LiveServer(app, sock, str(pkidir / "tls.pem"), str(pkidir / "tls.key")) as srv:
            fleet = FleetThread(str(pkidir / "ca.pem"), apns, str(pkidir / "push-ca.pem"))
            try:
                fleet.start(srv.url, N)
                yield {"container": c, "url": srv.url, "fleet": fleet}
            finally:
                fleet.close()
        c.close()


def test_technician_queues_and_support_is_refused(world):
    c: Container = world["container"]
    fleet: Fleet = world["fleet"].fleet
    assert len(fleet.enrolled()) == N
    ipad = fleet.enrolled()[0]
    tech = c.tokens.create("anna-technik", "technician", None, c.clock())
    desk = c.tokens.create("support-desk", "support", None, c.clock())
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    failed: list[tuple[int, str]] = []
    api_calls: list[str] = []

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            ctx = browser.new_context(base_url=world["url"], ignore_https_errors=True,
                                      viewport={"width": 1280, "height": 900})
            ctx.set_default_timeout(30_000)
            page = ctx.new_page()
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" and
                    not m.text.startswith("Failed to load resource") else None)
            page.on("response", lambda r: failed.append((r.status, r.url)) if r.status >= 400 else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("request", lambda r: api_calls.append(r.url) if "/api/v1/jobs/" in r.url else None)

            def shot(name: str) -> None:
                page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

            def log_in(token: str) -> None:
                page.goto("/")
                expect(page).to_have_url(re.compile(r"/login$"))
                page.fill("#token", token)

            # 1. a technician logs in with an API token
            log_in(tech)
            shot("01-login")
            page.click("form[action='/login'] button")
            expect(page.locator("h1")).to_have_text("City overview")
            expect(page.locator("#schools")).to_contain_text("Grundschule Nord")
            shot("02-overview-technician")

            # 2. finds an iPad by serial: the single match opens the device page
            page.fill("header input[name=q]", ipad.serial)
            page.press("header input[name=q]", "Enter")
            expect(page).to_have_url(f"{world['url']}/devices/{ipad.udid}")
            expect(page.locator("#state")).to_contain_text(ipad.serial)
            expect(page.locator("button[data-action=EraseDevice]")).to_have_count(1)
            shot("03-device-technician")

            # 3. queues DeviceInformation; the job page follows it live by polling the JSON API
            world["fleet"].pause()  # hold the push so the page is seen while the job runs
            page.click("button[data-action=DeviceInformation]")
            expect(page).to_have_url(re.compile(r"/jobs/[0-9a-f-]{36}$"))
            expect(page.locator("[data-field=state]")).to_have_text("running")
            expect(page.locator("[data-count=acknowledged]")).to_have_text("0")
            page.evaluate("window.__sameDocument = true")
            shot("04-job-running")
            world["fleet"].resume()
            expect(page.locator("[data-count=acknowledged]")).to_have_text("1", timeout=60_000)
            expect(page.locator("[data-field=state]")).to_have_text("finished")
            expect(page.locator("#job-devices")).to_contain_text("acknowledged")
            expect(page.locator("button[data-action=cancel]")).to_be_hidden()
            assert page.evaluate("window.__sameDocument") is True  # updated in place, not reloaded
            assert any(u.endswith(page.url.rsplit("/", 1)[1]) for u in api_calls), api_calls
            shot("05-job-acknowledged")
            page.click(f"#job-devices a[href='/devices/{ipad.udid}']")
            expect(page.locator("#inventory")).to_contain_text("SerialNumber")
            expect(page.locator("#commands")).to_contain_text("DeviceInformation")
            shot("06-device-inventory")

            # 4. the support desk is not offered EraseDevice, and a crafted POST is refused
            page.click("header form.logout button")
            log_in(desk)
            page.click("form[action='/login'] button")
            expect(page.locator("h1")).to_have_text("City overview")
            page.goto(f"/devices/{ipad.udid}")
            expect(page.locator("button[data-action=DeviceInformation]")).to_have_count(1)
            expect(page.locator("button[data-action=EraseDevice]")).to_have_count(0)
            expect(page.locator("#actions")).to_contain_text("Not for the support role")
            shot("07-device-support")
            with page.expect_navigation() as nav:
                page.evaluate("""([udid, serial]) => {
                    const f = document.createElement("form");
                    f.method = "post";
                    f.action = "/devices/" + encodeURIComponent(udid) + "/commands";
                    const fields = {csrf: document.querySelector("input[name=csrf]").value,
                                    request_type: "EraseDevice", confirm: serial};
                    for (const [k, v] of Object.entries(fields)) {
                        const i = document.createElement("input");
                        i.type = "hidden"; i.name = k; i.value = v; f.appendChild(i);
                    }
                    document.body.appendChild(f);
                    f.submit();
                }""", [ipad.udid, ipad.serial])
            assert nav.value.status == 403
            expect(page.locator("h1")).to_contain_text("Refused")
            expect(page.locator(".flash")).to_contain_text("the support role may not queue EraseDevice")
            shot("08-support-refused-erase")
        finally:
            browser.close()

    assert problems == []  # no script errors, nothing blocked by the Content-Security-Policy
    assert failed == [(403, f"{world['url']}/devices/{ipad.udid}/commands")]  # only the refused POST
    assert not ipad.erased and ipad.enrolled
    assert "EraseDevice" not in [cmd["request_type"] for cmd in c.devices.get(ipad.udid)["commands"]]
    assert fleet.stats()["errors"] == 0, fleet.stats()["error_samples"]
