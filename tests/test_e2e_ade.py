"""End to end, out of the box: 200 new iPads of two schools in Apple School Manager (the mock ADE).

The server syncs them through outages (a persistent one that stops a run mid-fetch, then a 5xx,
an expired session and a rate limit that are retried), defines one enrollment profile per school
and assigns it; the iPads are powered on, learn their profile URL from "Apple", POST their signed
MachineInfo there, enroll, report AwaitingConfiguration, install their school's whole blueprint
and leave Setup Assistant on DeviceConfigured.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from app.db.models_ade import DeviceSetup

from mdm.ade.client import ADEClient
from mdm.ade.errors import ADEUnavailable
from profiles.commands import expand_device_name
from simulator.ade_device import DeviceAttestation
from simulator.fleet import Fleet
from simulator.mock_ade import MockADEThread, make_server_token
from tests.support.world import running_world, wait_until

CITY = Path(__file__).resolve().parents[1] / "examples" / "city"
SCHOOLS = ("gs-lindenhof", "gy-schiller")
N = 200


@pytest.fixture
def world(settings, data_dir, tmp_path):
    att = DeviceAttestation()
    (tmp_path / "device-ca.pem").write_bytes(att.ca.cert_pem())
    mock = MockADEThread()
    with mock as ade_url, running_world(settings, data_dir, ade_url=ade_url, ade_sync_interval_seconds=0,
                                        ade_device_ca_file=tmp_path / "device-ca.pem") as w:
        yield w, mock.state, ade_url, att


def sync_through_outages(c, ade, ade_url) -> None:
    sync = c.ade_sync
    sync.page_size = 50
    pages = []
    fetch = ade.fetch

    def fetch_then_go_down(key, limit):  # Apple goes down for good after two pages
        out = fetch(key, limit)
        pages.append(out)
        if len(pages) == 2:
            ade.inject(503, n=3, path="/server/devices")
        return out

    ade.fetch = fetch_then_go_down
    default_factory = sync.client_factory
    sync.client_factory = lambda tok: ADEClient(tok, ade_url, sleep=lambda s: None, max_retries=2)
    try:
        with pytest.raises(ADEUnavailable):
            sync.run()
    finally:
        del ade.fetch
        sync.client_factory = default_factory
    assert c.ade_store.cursor() == ("fetch", pages[1]["cursor"]) and c.ade_store.status()["devices"] == 100

    # the next run resumes from the stored cursor through a 5xx, an expired session and a rate limit
    ade.inject(503, retry_after=1, path="/server/devices")
    ade.inject(401)
    ade.inject(429, retry_after=1, path="/profile/devices")
    res = sync.run()
    assert res["fetched"] == 100 and not res["cursor_reset"] and ade.counts["fetched"] == N
    assert sorted(res["profiles_defined"]) == list(SCHOOLS) and res["assigned"] == N and not res["not_assigned"]
    assert {k: ade.counts[k] for k in ("fault:503", "fault:401", "fault:429")} == {
        "fault:503": 4, "fault:401": 1, "fault:429": 1}
    assert not ade.faults


def test_two_hundred_ipads_come_out_of_the_box_configured(world, tmp_path):
    w, ade, ade_url, att = world
    c = w.container
    city = tmp_path / "city"
    shutil.copytree(CITY, city)
    c.blueprints.import_dir(city, actor="test")
    split = ade.seed(N, SCHOOLS)
    for school, serials in split.items():
        c.ade_store.add_rules(school, serials=serials, actor="test", now=c.clock())
    c.ade_sync.install_token(make_server_token(ade, c.ade_identity.cert), c.ade_identity, actor="test")
    sync_through_outages(c, ade, ade_url)

    school_of = {s: school for school, serials in split.items() for s in serials}
    blueprints = {school: c.blueprints.blueprint(school)[1] for school in SCHOOLS}
    wanted = {school: {p["identifier"] for p in c.profiles.list(school) if p["role"] == "pupil"} for school in SCHOOLS}

    async def scenario() -> Fleet:
        fleet = Fleet(ca_file=w.ca)
        listener = asyncio.create_task(fleet.listen(w.apns, w.push_ca))
        try:
            enrolled = await fleet.enroll_ade(list(school_of), ade_url, attestation=att)
            assert len(enrolled) == N, fleet.stats()["error_samples"]
            await wait_until(lambda: not any(d.awaiting_configuration for d in fleet.devices.values()),
                             timeout=300, what="every iPad to receive DeviceConfigured")
            await wait_until(lambda: c.ade_store.status()["setup"] == {"configured": N}, timeout=60,
                             what="the server to record every set-up as configured")
            return fleet
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
            await fleet.aclose()

    fleet = asyncio.run(scenario())
    st = fleet.stats()
    assert st["errors"] == 0 and st["double_applications"] == 0 and st["enroll_failures"] == 0, st["error_samples"]
    for d in fleet.devices.values():
        school = school_of[d.serial]
        bp = blueprints[school]
        assert d.state["supervised"] and wanted[school] <= set(d.profiles)
        assert len(d.managed_apps) >= len([a for a in bp.apps_for("pupil") if a.state == "present"])
        assert d.device_name == expand_device_name(bp.settings.device_name, bp=bp, role="pupil", serial=d.serial)
        assert d.acknowledged("DeviceConfigured") == 1
        assert d.history[-1][1] == "DeviceConfigured"  # it left Setup Assistant last
    sample = fleet.devices[next(iter(fleet.devices))]
    info = c.devices.get(sample.udid)
    assert info["school_id"] == school_of[sample.serial] and info["setup"]["state"] == "configured"
    with c.sessions() as s:
        jobs = set(s.execute(select(DeviceSetup.job_id)).scalars())
    for job in map(c.jobs.get, jobs):  # each set-up job done, nothing failed
        assert job["counts"]["acknowledged"] == job["total"] > 0 and job["state"] == "finished", job
    status = c.ade_store.status()
    assert status["enrolled"] == N and status["by_school"] == {s: N // 2 for s in SCHOOLS}
    assert {d.profile_status for d in ade.devices.values()} == {"pushed"}
