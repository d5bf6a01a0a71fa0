"""Which device requests run on the event loop (SQLite: an Idle with nothing to send and nothing
to write) and which on a device thread (everything else; every request on PostgreSQL)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from app.services.commands import Target
from mdm.commands import build_report
from app.storage.sql_base import WouldWrite, reads_only
from app.storage.sql_checkin import SQLCheckinStore
from tests.support.device import CONNECT_TYPE
from tests.support.fixtures import snapshot


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


def test_where_each_request_runs(container, enrolled, threads):
    sqlite = container.engine.dialect.name == "sqlite"
    r = enrolled.connect("Idle")  # the first Idle of this process records last_seen_at: a write
    assert r.status_code == 200 and r.content == b""
    assert threads.submitted == 1
    for _ in range(3):
        r = enrolled.connect("Idle")
        assert r.status_code == 200 and r.content == b""
    assert threads.submitted == (1 if sqlite else 4)

    # a command waits: the Idle that fetches it writes (sent), on a thread, and the answer is the command
    cu = container.commands.enqueue_request("DeviceInformation", {"Queries": ["DeviceName"]},
                                            Target(udids=(enrolled.udid,)), push=False).command_uuid
    before = threads.submitted
    r = enrolled.connect("Idle")
    rt, cmd = enrolled.command_of(r)
    assert rt == cu and cmd["RequestType"] == "DeviceInformation"
    assert threads.submitted == before + 1
    r = enrolled.connect("Acknowledged", cu, QueryResponses={"DeviceName": "iPad"})
    assert r.status_code == 200 and r.content == b""
    assert threads.submitted == before + 2
    assert container.devices.command_status(cu)["counts"]["acknowledged"] == 1


def test_refusals_on_the_loop_are_the_usual_replies(container, enrolled, threads):
    other = type(enrolled)(enrolled.http)  # a key of its own
    body = build_report(enrolled.udid, "Idle")
    r = enrolled.http.put("/mdm/connect", content=body,
                          headers=other.headers(body, CONNECT_TYPE, cert=enrolled.cert, key=other.key))
    assert r.status_code == 401 and r.json()["error"]["code"]
    assert threads.submitted == (0 if container.engine.dialect.name == "sqlite" else 1)


def test_reads_only_refuses_write_transactions_before_they_start(container, enrolled):
    store = SQLCheckinStore(container.sessions)
    before = snapshot(container.engine)
    with reads_only():
        assert store.device_auth(enrolled.udid) is not None
        with store.tx(readonly=True) as s:
            assert s.connection() is not None
        with pytest.raises(WouldWrite):
            with store.tx():
                raise AssertionError("not reached")
        with pytest.raises(WouldWrite):
            with store.conn():
                raise AssertionError("not reached")
    with store.tx():  # outside the block writes are fine again
        pass
    assert snapshot(container.engine) == before
