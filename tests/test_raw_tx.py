"""raw_tx and RawStatement (the device hot path's statements on the DB-API connection), against both
backends (DATABASE_URL): the rows they write and read are the ones SQLAlchemy would, a block that
raises leaves nothing behind, outages are Unavailable."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import bindparam, insert, select, update

from app.db.models import Command, CommandEvent, QueueItem
from app.storage.sql_raw import _HELD, RawSelect, RawStatement, held_connection, raw_tx
from mdm.errors import Unavailable
from tests.conftest import aware

AT = dt.datetime(2026, 11, 25, 7, 45, 12, 345678, tzinfo=dt.timezone.utc)
_EVENT = RawStatement(insert(CommandEvent).values(udid=bindparam("udid"), command_uuid=bindparam("cu"),
                                                  status=bindparam("status"), at=bindparam("at")))
_EVENTS = RawStatement(select(CommandEvent.id, CommandEvent.status, CommandEvent.at)
                       .where(CommandEvent.command_uuid == bindparam("cu")).order_by(CommandEvent.id))
_ENCRYPT = RawStatement(select(Command.uuid, Command.encrypt, Command.expires_at).where(Command.uuid == bindparam("cu")))
# a constant of the statement's own (sent_count + 1) beside the caller's values
_BUMP = RawStatement(update(QueueItem).where(QueueItem.udid == bindparam("udid"))
                     .values(sent_count=QueueItem.sent_count + 1, sent_at=bindparam("at")))


def test_rows_written_raw_read_back_through_sqlalchemy_and_the_other_way(container):
    with raw_tx(container.engine) as c:
        assert c.run(_EVENT, {"udid": "U1", "cu": "cu-raw", "status": "sent", "at": AT}) == 1
    with container.engine.begin() as c:  # SQLAlchemy reads what raw wrote ...
        row = c.execute(select(CommandEvent.at, CommandEvent.status).where(CommandEvent.command_uuid == "cu-raw")).one()
        assert aware(row.at) == AT and row.status == "sent"
        # ... and raw reads what SQLAlchemy wrote, with the same types
        c.execute(insert(CommandEvent).values(udid="U1", command_uuid="cu-raw", status="acknowledged",
                                              at=AT + dt.timedelta(seconds=1)))
    with raw_tx(container.engine, readonly=True) as c:
        rows = c.all(_EVENTS, {"cu": "cu-raw"})
    assert [r.status for r in rows] == ["sent", "acknowledged"]
    assert [aware(r.at) for r in rows] == [AT, AT + dt.timedelta(seconds=1)]
    assert isinstance(rows[0].id, int)
    # stored alike, as the database sees them (SQLite compares dates as text)
    with container.engine.connect() as c:
        stored = [r[0] for r in c.exec_driver_sql(
            "SELECT CAST(at AS VARCHAR(64)) FROM command_events WHERE command_uuid = 'cu-raw' ORDER BY id")]
    assert len(stored) == 2 and len(stored[0]) == len(stored[1]) and stored[0] < stored[1]


def test_booleans_and_missing_rows(container, enrolled):
    uuid = container.commands.enqueue_request("DeviceInformation", {"Queries": ["DeviceName"]},
                                              _target(enrolled), push=False).command_uuid
    with raw_tx(container.engine, readonly=True) as c:
        row = c.first(_ENCRYPT, {"cu": uuid})
        assert row.encrypt is False and row.expires_at is None
        assert c.first(_ENCRYPT, {"cu": "no-such"}) is None


def test_statement_constants_are_bound_beside_the_callers_values(container, enrolled):
    container.commands.enqueue_request("DeviceInformation", {"Queries": ["DeviceName"]}, _target(enrolled), push=False)
    for _ in range(2):
        with raw_tx(container.engine) as c:
            assert c.run(_BUMP, {"udid": enrolled.udid, "at": AT}) == 1
    with container.engine.connect() as c:
        row = c.execute(select(QueueItem.sent_count, QueueItem.sent_at).where(QueueItem.udid == enrolled.udid)).one()
    assert row.sent_count == 2 and aware(row.sent_at) == AT


def test_a_block_that_raises_leaves_nothing_behind(container):
    with pytest.raises(RuntimeError):
        with raw_tx(container.engine) as c:
            c.run(_EVENT, {"udid": "U2", "cu": "cu-rolled-back", "status": "sent", "at": AT})
            raise RuntimeError("after the write")
    with raw_tx(container.engine, readonly=True) as c:
        assert c.all(_EVENTS, {"cu": "cu-rolled-back"}) == []
    with raw_tx(container.engine) as c:  # the write lock (SQLite's gate) was let go
        c.run(_EVENT, {"udid": "U2", "cu": "cu-after", "status": "sent", "at": AT})


def test_a_missing_value_is_refused_before_anything_runs(container):
    with pytest.raises(KeyError):
        with raw_tx(container.engine) as c:
            c.run(_EVENT, {"udid": "U3", "cu": "cu-missing", "at": AT})  # no status


def test_a_lost_database_is_unavailable(container, monkeypatch):
    engine = container.engine
    lost = engine.dialect.loaded_dbapi.OperationalError("server closed the connection unexpectedly")

    class Cursor:
        def execute(self, *_):
            raise lost

        def close(self):
            pass

    real = engine.raw_connection

    def checkout():
        fairy = real()
        fairy.driver_connection.cursor  # noqa: B018 - the real connection, with a failing cursor
        return _Wrapped(fairy, Cursor())

    monkeypatch.setattr(engine, "raw_connection", checkout)
    with pytest.raises(Unavailable):
        with raw_tx(engine) as c:
            c.run(_EVENT, {"udid": "U4", "cu": "cu-lost", "status": "sent", "at": AT})
    monkeypatch.undo()
    with raw_tx(engine) as c:  # nothing held: the next transaction starts
        c.run(_EVENT, {"udid": "U4", "cu": "cu-next", "status": "sent", "at": AT})


class _Wrapped:
    """A pooled connection whose driver connection hands out the given cursor."""

    def __init__(self, fairy, cursor) -> None:
        self.fairy = fairy
        outer = self

        class Driver:
            def __getattr__(self, name):
                return getattr(outer.fairy.driver_connection, name)

            def cursor(self):
                return cursor

        self.driver_connection = Driver()

    def close(self) -> None:
        self.fairy.close()


def _target(device):
    from app.services.commands import Target

    return Target(udids=(device.udid,))


_ANY_EVENT = RawSelect(select(CommandEvent.status).where(CommandEvent.command_uuid == bindparam("cu")))


def test_one_checkout_for_everything_in_a_held_block(container, monkeypatch):
    engine, checkouts = container.engine, []
    real = engine.raw_connection

    def counting():
        checkouts.append(1)
        return real()

    monkeypatch.setattr(engine, "raw_connection", counting)
    before = engine.pool.checkedout()
    with held_connection(engine):
        with held_connection(engine):  # nested: the outer one
            assert _ANY_EVENT.first(engine, {"cu": "cu-held"}) is None
        with raw_tx(engine) as c:
            c.run(_EVENT, {"udid": "U5", "cu": "cu-held", "status": "sent", "at": AT})
        assert _ANY_EVENT.first(engine, {"cu": "cu-held"}).status == "sent"  # committed
        with raw_tx(engine, readonly=True) as c:
            assert len(c.all(_EVENTS, {"cu": "cu-held"})) == 1
        assert engine.pool.checkedout() == before + 1
    assert checkouts == [1] and engine.pool.checkedout() == before
    assert _ANY_EVENT.first(engine, {"cu": "cu-held"}) is not None  # outside: a checkout of its own
    assert checkouts == [1, 1]


def test_a_read_on_its_own_leaves_no_transaction_open(container):
    engine = container.engine
    with held_connection(engine):
        _ANY_EVENT.first(engine, {"cu": "cu-none"})
        conn = _HELD.get()[1].driver_connection
        assert not conn.in_transaction if engine.dialect.name == "sqlite" else (
            conn.info.transaction_status == 0 and conn.autocommit is False)


def test_a_raw_tx_inside_another_joins_it(container):
    """One transaction: the inner block's write commits with the outer one, and goes when the outer
    one rolls back."""
    with pytest.raises(RuntimeError):
        with raw_tx(container.engine) as outer:
            outer.run(_EVENT, {"udid": "U3", "cu": "cu-joined", "status": "sent", "at": AT})
            with raw_tx(container.engine) as inner:
                assert inner is outer
                inner.run(_EVENT, {"udid": "U3", "cu": "cu-joined", "status": "acknowledged", "at": AT})
            raise RuntimeError("after both writes")
    with raw_tx(container.engine, readonly=True) as c:
        assert c.all(_EVENTS, {"cu": "cu-joined"}) == []
    with raw_tx(container.engine) as outer:
        outer.run(_EVENT, {"udid": "U3", "cu": "cu-joined", "status": "sent", "at": AT})
        with raw_tx(container.engine, readonly=True) as inner:  # a read may join a write
            assert [r.status for r in inner.all(_EVENTS, {"cu": "cu-joined"})] == ["sent"]
    with raw_tx(container.engine, readonly=True) as c:
        assert [r.status for r in c.all(_EVENTS, {"cu": "cu-joined"})] == ["sent"]


def test_a_write_cannot_join_a_read_and_an_orm_transaction_cannot_nest(container):
    with raw_tx(container.engine, readonly=True):
        with pytest.raises(RuntimeError, match="read-only"):
            with raw_tx(container.engine):
                pass
    with raw_tx(container.engine):
        # on SQLite it would wait for the outer transaction's write lock for ever
        with pytest.raises(RuntimeError, match="inside a raw transaction"):
            container.inventory.command_body("any")
    with raw_tx(container.engine) as c:  # nothing was left held
        c.run(_EVENT, {"udid": "U4", "cu": "cu-after-nesting", "status": "sent", "at": AT})
