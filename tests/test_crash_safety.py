"""Crash safety: kill -9 the server in the middle of a storm and restart it; stop and start PostgreSQL
during a storm. Every command ends acknowledged exactly once on the devices; nothing is lost."""

from __future__ import annotations

import asyncio
import os
import ssl
import shutil
import subprocess
import time

import httpx
import pytest

from app.container import Container
from app.services.commands import Target
from app.services.enrollment import hash_secret
from app.settings import Settings
from profiles.wifi_profile import wifi_psk_profile
from simulator.fleet import Fleet
from simulator.mock_apns import MockAPNsThread
from tests.support.db import fresh_database, postgres_database
from tests.support.live import free_socket
from tests.support.procs import ServerProcess, clean_env
from tests.support.world import wait_until

N = int(os.environ.get("SCHOOLMDM_TEST_STORM", "2000"))


def _port() -> int:
    s = free_socket()
    p = s.getsockname()[1]
    s.close()
    return p


def _storm(data_dir, tmp_path, db_url, disrupt) -> None:
    pki = data_dir / "pki"
    ca = str(pki / "ca.pem")
    mt = MockAPNsThread(str(pki / "apns-server.pem"), str(pki / "apns-server.key"), str(pki / "push-ca.pem"))
    with mt as apns_port:
        port = _port()
        url = f"https://127.0.0.1:{port}"
        env = clean_env(SCHOOLMDM_DATA_DIR=str(data_dir), SCHOOLMDM_DATABASE_URL=db_url, SCHOOLMDM_PUBLIC_URL=url,
                        SCHOOLMDM_APNS_URL=f"https://127.0.0.1:{apns_port}", SCHOOLMDM_APNS_CA_FILE=str(pki / "push-ca.pem"),
                        SCHOOLMDM_LOG_LEVEL="WARNING", SCHOOLMDM_INVENTORY_INTERVAL_SECONDS="0",
                        SCHOOLMDM_PUSH_INTERVAL_SECONDS="0.05", SCHOOLMDM_DEVICE_RATE_PER_SECOND="0",
                        SCHOOLMDM_REPUSH_AFTER_SECONDS="5", SCHOOLMDM_REPUSH_INTERVAL_SECONDS="2",
                        SCHOOLMDM_ORG_NAME="Test City Schools")
        server = ServerProcess(["serve", "--port", str(port)], env, tmp_path / "serve.log").start()
        try:
            server.wait_ready(url, ca)
            c = Container(Settings(data_dir=data_dir, database_url=db_url, public_url=url, org_name="Test City Schools"))
            c.schools.upsert("gs-nord", "Grundschule Nord", hash_secret("t0ken"), c.clock())
            payload = wifi_psk_profile("gs-nord", c.settings.org_name, "GS-Nord", "Pausenbrot2026!")
            pv = c.profiles.store(school_id="gs-nord", role=None, name="wifi", payload=payload)
            ident = payload["PayloadIdentifier"]

            async def scenario():
                fleet = Fleet(ca_file=ca, session_concurrency=64)
                listener = asyncio.create_task(fleet.listen(mt.url, str(pki / "push-ca.pem")))
                try:
                    await fleet.enroll_all(N, url, "gs-nord", "t0ken", concurrency=16)
                    assert len(fleet.enrolled()) == N
                    res = await asyncio.to_thread(c.profiles.push, pv.id, Target(school_id="gs-nord"))
                    counts = lambda: _counts(c, res.command_uuid)
                    await wait_until(lambda: counts().get("acknowledged", 0) >= N // 3, timeout=300,
                                     what="a third acknowledged")
                    await asyncio.to_thread(disrupt, server, url, ca)
                    await wait_until(lambda: counts() == {"acknowledged": N}, timeout=300,
                                     what="every device acknowledged after the disruption")
                    return fleet
                finally:
                    listener.cancel()
                    await asyncio.gather(listener, return_exceptions=True)
                    await fleet.aclose()

            fleet = asyncio.run(scenario())
            st = fleet.stats()
            assert st["double_applications"] == 0
            for d in fleet.enrolled():
                assert d.profile_meta[ident]["installs"] == 1, d.serial  # applied exactly once
            c.close()
        finally:
            server.stop()


def _counts(c, cu):
    try:
        return c.devices.command_status(cu)["counts"]
    except Exception:  # the database may be down during the disruption
        return {}


@pytest.mark.slow
def test_kill_9_mid_storm_and_restart(data_dir, tmp_path):
    def kill_and_restart(server, url, ca):
        server.kill9()
        server.start()
        server.wait_ready(url, ca)

    with fresh_database(tmp_path) as db_url:
        _storm(data_dir, tmp_path, db_url, kill_and_restart)


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("pg_ctlcluster"), reason="needs a local PostgreSQL cluster to stop")
def test_postgres_stopped_and_started_mid_storm(data_dir, tmp_path):
    cluster = sorted(os.listdir("/etc/postgresql"))[0] if os.path.isdir("/etc/postgresql") else None
    if cluster is None:
        pytest.skip("no local PostgreSQL cluster")

    def bounce(server, url, ca):
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", cluster, "main", "stop", "-m", "fast"],
                       check=True, capture_output=True)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # the service says it is not ready
                r = httpx.get(f"{url}/readyz", verify=ssl.create_default_context(cafile=ca), timeout=5)
                if r.status_code == 503:
                    break
                time.sleep(0.2)
            else:
                raise AssertionError("/readyz did not report the database outage")
            time.sleep(2)
        finally:
            subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", cluster, "main", "start"],
                           check=True, capture_output=True)
        server.wait_ready(url, ca, timeout=60)  # recovered by itself, no restart

    with postgres_database() as db_url:
        _storm(data_dir, tmp_path, db_url, bounce)
