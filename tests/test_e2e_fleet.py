"""End to end: the real server (uvicorn, HTTPS, free port), the mock APNs, 20 simulated iPads.

They enroll through SCEP, the school's Wi-Fi profile is pushed to them, every one acknowledges
it, ProfileList shows it, and ``schoolmdm devices show`` reports it.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from typer.testing import CliRunner

from app.container import Container
from app.services.commands import Target
from app.settings import get_settings
from profiles.wifi_profile import wifi_psk_profile
from simulator.fleet import Fleet
from tests.support.world import running_world, wait_until

N = 20


@pytest.fixture
def world(settings, data_dir):
    with running_world(settings, data_dir) as w:
        yield {"container": w.container, "server": w.server, "apns": w.apns, "ca": w.ca, "push_ca": w.push_ca,
               "settings": w.settings}


def test_twenty_ipads_enroll_and_install_the_school_wifi(world, monkeypatch):
    c: Container = world["container"]
    school = "gs-nord"
    from app.services.enrollment import hash_secret

    c.schools.upsert(school, "Grundschule Nord", hash_secret("t0ken"), c.clock())
    payload = wifi_psk_profile(school, c.settings.org_name, "GS-Nord-Schueler", "Pausenbrot2026!")
    pv = c.profiles.store(school_id=school, role=None, name="wifi", payload=payload)

    async def scenario() -> Fleet:
        fleet = Fleet(ca_file=world["ca"])
        listener = asyncio.create_task(fleet.listen(world["apns"], world["push_ca"]))
        try:
            await fleet.enroll_all(N, world["server"].url, school, "t0ken")
            assert len(fleet.enrolled()) == N
            res = await asyncio.to_thread(c.profiles.push, pv.id, Target(school_id=school))
            assert res.count == N
            await wait_until(lambda: all(payload["PayloadIdentifier"] in d.profiles for d in fleet.enrolled()),
                             what="every iPad to install the Wi-Fi profile")
            await wait_until(lambda: c.devices.command_status(res.command_uuid)["counts"] == {"acknowledged": N},
                             what="every InstallProfile to be acknowledged")
            pl = await asyncio.to_thread(c.commands.enqueue_request, "ProfileList", None, Target(school_id=school))
            await wait_until(lambda: c.devices.command_status(pl.command_uuid)["counts"] == {"acknowledged": N},
                             what="every ProfileList to be acknowledged")
            return fleet
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
            await fleet.aclose()

    fleet = asyncio.run(scenario())
    stats = fleet.stats()
    assert stats["errors"] == 0, stats["error_samples"]
    assert stats["double_applications"] == 0
    ident = payload["PayloadIdentifier"]
    for d in fleet.enrolled():
        installed = d.profiles[ident]
        # it carries the Wi-Fi password: signed, and encrypted to this iPad's identity on the way
        assert d.profile_meta[ident]["signed"] and d.profile_meta[ident]["encrypted"]
        wifi = installed["PayloadContent"][0]
        assert wifi["PayloadType"] == "com.apple.wifi.managed" and wifi["SSID_STR"] == "GS-Nord-Schueler"
        shown = {p["identifier"]: p for p in c.devices.get(d.udid)["profiles"]}
        # ProfileList (ManagedOnly false) lists the enrollment profile too, as an iPad does
        assert set(shown) == {ident, f"org.schoolmdm.enroll.{school}"}
        assert shown[ident]["source"] == "ProfileList" and shown[ident]["content_hash"] == pv.content_hash

    # the CLI reports it too, through the API of the live server (TLS verified with the data dir's CA)
    s = world["settings"]
    monkeypatch.setenv("SCHOOLMDM_DATA_DIR", str(s.data_dir))
    monkeypatch.setenv("SCHOOLMDM_DATABASE_URL", s.database_url)
    monkeypatch.setenv("SCHOOLMDM_API_URL", world["server"].url)
    monkeypatch.setenv("SCHOOLMDM_API_TOKEN", c.tokens.create("e2e-desk", "support", None, c.clock()))
    monkeypatch.delenv("SCHOOLMDM_API_CA_FILE", raising=False)
    get_settings.cache_clear()
    from app.cli.main import app as cli

    udid = fleet.enrolled()[0].udid
    out = CliRunner().invoke(cli, ["devices", "show", udid, "--json"])
    get_settings.cache_clear()
    assert out.exit_code == 0, out.output
    shown = json.loads(out.output)
    assert shown["enrollment_state"] == "enrolled"
    assert ident in [p["identifier"] for p in shown["profiles"]]
    assert any(cmd["request_type"] == "InstallProfile" and cmd["status"] == "acknowledged"
               for cmd in shown["commands"])
