"""Scale out: two server instances and one worker on one PostgreSQL, behind a TCP load balancer.

500 simulated iPads spread across both instances; a profile is pushed to all of them; one
instance is killed (SIGKILL) in the middle; every device ends with the profile acknowledged
exactly once, and every device was pushed exactly once (the worker, not the instances, pushes).
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from app.container import Container
from app.services.commands import Target
from app.services.enrollment import hash_secret
from app.settings import Settings
from profiles.wifi_profile import wifi_psk_profile
from simulator.fleet import Fleet
from simulator.mock_apns import MockAPNsThread
from tests.support.db import postgres_database
from tests.support.live import free_socket
from tests.support.procs import ServerProcess, clean_env
from tests.support.proxy import TCPBalancer
from tests.support.world import wait_until

N = 500


def _free_port() -> int:
    s = free_socket()
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.slow
def test_two_instances_one_worker_one_postgres(data_dir, tmp_path):
    pki = data_dir / "pki"
    ca = str(pki / "ca.pem")
    mt = MockAPNsThread(str(pki / "apns-server.pem"), str(pki / "apns-server.key"), str(pki / "push-ca.pem"))
    with postgres_database() as db_url, mt as apns_port:
        ports = [_free_port(), _free_port()]
        with TCPBalancer([("127.0.0.1", p) for p in ports]) as lb:
            public = f"https://127.0.0.1:{lb.port}"
            env = clean_env(SCHOOLMDM_DATA_DIR=str(data_dir), SCHOOLMDM_DATABASE_URL=db_url, SCHOOLMDM_PUBLIC_URL=public,
                       SCHOOLMDM_APNS_URL=f"https://127.0.0.1:{apns_port}", SCHOOLMDM_APNS_CA_FILE=str(pki / "push-ca.pem"),
                       SCHOOLMDM_LOG_LEVEL="WARNING", SCHOOLMDM_INVENTORY_INTERVAL_SECONDS="0",
                       SCHOOLMDM_PUSH_INTERVAL_SECONDS="0.05", SCHOOLMDM_DEVICE_RATE_PER_SECOND="0",
                       SCHOOLMDM_ORG_NAME="Test City Schools")
            web = dict(env, SCHOOLMDM_BACKGROUND="false")
            procs = [ServerProcess(["serve", "--port", str(p)], web, tmp_path / f"serve-{p}.log").start() for p in ports]
            procs.append(ServerProcess(["worker"], env, tmp_path / "worker.log").start())
            try:
                for p, proc in zip(ports, procs):
                    proc.wait_ready(f"https://127.0.0.1:{p}", ca)
                s = Settings(data_dir=data_dir, database_url=db_url, public_url=public, org_name="Test City Schools")
                c = Container(s)
                c.schools.upsert("gs-nord", "Grundschule Nord", hash_secret("t0ken"), c.clock())
                payload = wifi_psk_profile("gs-nord", s.org_name, "GS-Nord", "Pausenbrot2026!")
                pv = c.profiles.store(school_id="gs-nord", role=None, name="wifi", payload=payload)
                ident = payload["PayloadIdentifier"]

                async def scenario() -> Fleet:
                    fleet = Fleet(ca_file=ca)
                    listener = asyncio.create_task(fleet.listen(f"https://127.0.0.1:{apns_port}", str(pki / "push-ca.pem")))
                    try:
                        await fleet.enroll_all(N, public, "gs-nord", "t0ken", concurrency=16)
                        assert len(fleet.enrolled()) == N
                        res = await asyncio.to_thread(c.profiles.push, pv.id, Target(school_id="gs-nord"))
                        assert res.count == N
                        acked = lambda: c.devices.command_status(res.command_uuid)["counts"].get("acknowledged", 0)
                        await wait_until(lambda: acked() >= N // 4, timeout=180, what="a quarter acknowledged")
                        procs[0].kill9()  # instance A dies mid-storm
                        await wait_until(lambda: acked() == N, timeout=240, what="every device acknowledged")
                        return fleet, res
                    finally:
                        listener.cancel()
                        await asyncio.gather(listener, return_exceptions=True)
                        await fleet.aclose()

                fleet, res = asyncio.run(scenario())
                assert lb.connections[ports[0]] > 0 and lb.connections[ports[1]] > 0  # both served devices
                assert c.devices.command_status(res.command_uuid)["counts"] == {"acknowledged": N}
                st = fleet.stats()
                assert st["double_applications"] == 0
                for d in fleet.enrolled():
                    assert d.profile_meta[ident]["installs"] == 1  # applied exactly once
                pushes = Counter(p.token for p in mt.mock.pushes)
                tokens = {d.token.hex() for d in fleet.enrolled()}
                assert set(pushes) == tokens and set(pushes.values()) == {1}  # every push ran once
                c.close()
            finally:
                for proc in procs:
                    proc.stop()
