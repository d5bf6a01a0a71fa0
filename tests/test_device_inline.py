"""Where device requests run: on SQLite on the event loop (no thread hand-off), on PostgreSQL on a
device thread; and on SQLite a request that finds the write gate taken waits for it."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.services.commands import Target
from mdm.commands import build_report
from tests.support.device import CONNECT_TYPE, TestDevice


class CountingThreads(ThreadPoolExecutor):
    def __init__(self) -> None:
        super().__init__(max_workers=2)
        self.submitted = 0

    def submit(self, fn, *args, **kwargs):
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


@pytest.fixture
def threads(container):
    counting = CountingThreads()
    container.__dict__["device_threads"] = counting
    yield counting


def on_sqlite(container) -> bool:
    return container.engine.dialect.name == "sqlite"


def test_where_each_request_runs(container, client, school, threads):
    sqlite = on_sqlite(container)
    dev = TestDevice(client).enroll(school["id"], school["token"])  # Authenticate + TokenUpdate
    assert threads.submitted == (0 if sqlite else 2)
    before = threads.submitted
    for _ in range(3):
        r = dev.connect("Idle")
        assert r.status_code == 200 and r.content == b""
    cu = container.commands.enqueue_request("DeviceInformation", {"Queries": ["DeviceName"]},
                                            Target(udids=(dev.udid,)), push=False).command_uuid
    r = dev.connect("Idle")
    rt, cmd = dev.command_of(r)
    assert rt == cu and cmd["RequestType"] == "DeviceInformation"
    r = dev.connect("Acknowledged", cu, QueryResponses={"DeviceName": "iPad"})
    assert r.status_code == 200 and r.content == b""
    assert container.devices.command_status(cu)["counts"]["acknowledged"] == 1
    assert threads.submitted == (0 if sqlite else before + 5)


def test_refusals_are_the_usual_replies(container, enrolled, threads):
    other = type(enrolled)(enrolled.http)  # a key of its own
    body = build_report(enrolled.udid, "Idle")
    r = enrolled.http.put("/mdm/connect", content=body,
                          headers=other.headers(body, CONNECT_TYPE, cert=enrolled.cert, key=other.key))
    assert r.status_code == 401 and r.json()["error"]["code"]
    assert threads.submitted == (0 if on_sqlite(container) else 1)


def test_a_request_on_the_loop_waits_for_the_write_gate(container, enrolled, threads):
    """SQLite: another writer of this process holds the gate; the acknowledgement waits for it on
    the loop and is then recorded, not refused."""
    if not on_sqlite(container):
        pytest.skip("the write gate is SQLite's")
    cu = container.commands.enqueue_request("DeviceInformation", {"Queries": ["DeviceName"]},
                                            Target(udids=(enrolled.udid,)), push=False).command_uuid
    assert enrolled.command_of(enrolled.connect("Idle"))[0] == cu
    with container.engine.connect() as c:  # a write transaction in this thread holds the gate
        with c.begin():
            c.exec_driver_sql("SELECT 1")
            held = threading.Event()
            answer = {}

            def ack() -> None:
                held.set()
                t0 = time.perf_counter()
                answer["r"] = enrolled.connect("Acknowledged", cu, QueryResponses={"DeviceName": "iPad"})
                answer["waited"] = time.perf_counter() - t0

            t = threading.Thread(target=ack)
            t.start()
            held.wait(5)
            time.sleep(0.3)
            assert "r" not in answer  # still waiting for the gate
    t.join(10)
    assert answer["r"].status_code == 200 and answer["waited"] >= 0.2
    assert container.devices.command_status(cu)["counts"]["acknowledged"] == 1
    assert threads.submitted == 0
