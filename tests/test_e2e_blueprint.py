"""End to end: simulated iPads install a school's full blueprint (profiles, apps, settings), and a
second push after a one-key change re-sends only that profile."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from app.services.enrollment import hash_secret
from profiles.commands import expand_device_name
from simulator.fleet import Fleet
from tests.support.world import running_world, wait_until

CITY = Path(__file__).resolve().parents[1] / "examples" / "city"
SCHOOL = "gs-lindenhof"
N = 5


@pytest.fixture
def world(settings, data_dir):
    with running_world(settings, data_dir) as w:
        yield w


def finished(c, job_id):
    return lambda: c.jobs.get(job_id)["state"] == "finished"


def test_full_blueprint_then_only_the_changed_profile(world, tmp_path):
    c = world.container
    city = tmp_path / "city"
    shutil.copytree(CITY, city)
    c.blueprints.import_dir(city, actor="test")
    c.schools.upsert(SCHOOL, "Grundschule Am Lindenhof", hash_secret("t0ken"), c.clock())
    _, bp = c.blueprints.blueprint(SCHOOL)
    pupil_profiles = {p["identifier"] for p in c.profiles.list(SCHOOL) if p["role"] == "pupil"}
    apps = [a for a in bp.apps_for("pupil") if a.state == "present"]
    assert pupil_profiles and apps

    async def scenario():
        fleet = Fleet(ca_file=world.ca)
        listener = asyncio.create_task(fleet.listen(world.apns, world.push_ca))
        try:
            await fleet.enroll_all(N, world.server.url, SCHOOL, "t0ken")
            first = await asyncio.to_thread(c.blueprint_push.push, SCHOOL, actor="test")
            kinds = sorted({x["request_type"] for x in first["commands"]})
            assert kinds == ["InstallApplication", "InstallProfile", "Settings"]
            await wait_until(finished(c, first["job_id"]), what="the blueprint job")
            job = c.jobs.get(first["job_id"])
            assert job["counts"]["acknowledged"] == job["total"] and job["counts"]["error"] == 0
            for d in fleet.enrolled():
                assert pupil_profiles <= set(d.profiles)
                assert len(d.managed_apps) >= len(apps)
                assert d.device_name == expand_device_name(bp.settings.device_name, bp=bp, role="pupil",
                                                           serial=d.serial)

            # nothing changed: nothing to send
            again = await asyncio.to_thread(c.blueprint_push.plan, SCHOOL)
            assert again[1] == []

            f = city / "schools" / f"{SCHOOL}.yaml"
            f.write_text(f.read_text().replace("Sonnenblume-Lindenhof-7", "Sonnenblume-Lindenhof-8"))
            c.blueprints.import_dir(city, actor="test")
            second = await asyncio.to_thread(c.blueprint_push.push, SCHOOL, actor="test")
            assert [(x["request_type"], x["devices"]) for x in second["commands"]] == [("InstallProfile", N)]
            wifi_id = next(p["identifier"] for p in c.profiles.list(SCHOOL)
                           if p["role"] == "pupil" and p["name"] == "wifi")
            assert second["commands"][0]["profile_id"] == c.profiles.latest_by_name(SCHOOL, "wifi", "pupil")["id"]
            await wait_until(finished(c, second["job_id"]), what="the one-profile job")
            for d in fleet.enrolled():
                nets = [p for p in d.profiles[wifi_id]["PayloadContent"] if p["PayloadType"] == "com.apple.wifi.managed"]
                assert any(n.get("Password") == "Sonnenblume-Lindenhof-8" for n in nets)
                assert d.profile_meta[wifi_id]["installs"] == 2
            return fleet
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
            await fleet.aclose()

    fleet = asyncio.run(scenario())
    st = fleet.stats()
    assert st["errors"] == 0 and st["double_applications"] == 0, st["error_samples"]
