"""PostgreSQL's pool: a connection idle for a while is pinged before it is handed out; one that
went bad is never handed out again (``app.db.engine``). Runs in the PostgreSQL pass."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import pytest
from sqlalchemy import bindparam, select, text

from app.db import engine as engine_module
from app.db.models import Device
from app.storage.sql_raw import RawSelect
from mdm.errors import Unavailable
from tests.support.db import postgres_database

_DEVICE = RawSelect(select(Device.udid).where(Device.udid == bindparam("udid")))


@pytest.fixture
def pg_url():
    with postgres_database() as url:
        yield url


def backend_pid(engine) -> int:
    fairy = engine.raw_connection()
    try:
        cur = fairy.driver_connection.cursor()
        cur.execute("SELECT pg_backend_pid()")
        return cur.fetchone()[0]
    finally:
        fairy.close()


def terminate(url: str, pid: int) -> None:
    admin = engine_module.make_engine(url)
    try:
        with admin.connect() as c:
            assert c.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar() is True
    finally:
        admin.dispose()


@contextmanager
def one_dead_connection(url: str, monkeypatch, ping_after: float) -> Iterator:
    """An engine whose pool holds one connection, idle, whose backend has just been terminated;
    pooled connections idle for ``ping_after`` seconds are pinged."""
    monkeypatch.setattr(engine_module, "PING_IDLE_AFTER", ping_after)
    engine = engine_module.make_engine(url, pool_size=1, max_overflow=0)
    try:
        first = backend_pid(engine)
        terminate(url, first)
        yield engine
        assert backend_pid(engine) != first  # the dead connection is gone from the pool
    finally:
        engine.dispose()


def test_a_connection_idle_past_the_delay_is_pinged_and_replaced_when_dead(pg_url, monkeypatch):
    with one_dead_connection(pg_url, monkeypatch, ping_after=0.0) as engine:
        # the ping finds the connection dead and the pool connects anew: the request never sees it
        assert _DEVICE.first(engine, {"udid": "nobody"}) is None


def test_a_connection_just_used_is_not_pinged_and_a_dead_one_is_dropped_after_failing(pg_url, monkeypatch):
    with one_dead_connection(pg_url, monkeypatch, ping_after=3600.0) as engine:
        with pytest.raises(Unavailable):  # handed out unchecked: this request fails (the device retries)
            _DEVICE.first(engine, {"udid": "nobody"})
        # ... and the dead connection did not go back into the pool
        assert _DEVICE.first(engine, {"udid": "nobody"}) is None
