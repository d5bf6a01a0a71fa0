"""RawSelect: a Core SELECT on the DB-API connection, against both backends (DATABASE_URL)."""

from __future__ import annotations

import pytest
from sqlalchemy import bindparam, select

from app.db.models import Device, School
from app.storage.sql_raw import RawSelect
from mdm.errors import Unavailable

_TWO = RawSelect(select(Device.udid, Device.serial, School.name)
                 .join(School, School.id == Device.school_id)
                 .where(Device.serial == bindparam("serial"), School.id == bindparam("school")))


def test_the_same_row_as_through_sqlalchemy_with_parameters_in_their_places(container, enrolled, school):
    with container.engine.connect() as c:
        expected = c.execute(_TWO.stmt, {"school": school["id"], "serial": enrolled.serial}).first()
    assert expected is not None
    assert tuple(_TWO.first(container.engine, {"school": school["id"], "serial": enrolled.serial})) == tuple(expected)
    # the parameters are matched by name, whatever order the dialect wants them in
    assert _TWO.first(container.engine, {"serial": enrolled.serial, "school": "elsewhere"}) is None
    assert _TWO.first(container.engine, {"serial": "nope", "school": school["id"]}) is None


def failing_connection(error: Exception, closed: list) -> object:
    class Cursor:
        def execute(self, *_):
            raise error

        def close(self):
            pass

    class Driver:
        autocommit = False

        class info:
            transaction_status = 0

        def cursor(self):
            return Cursor()

    class Pooled:
        driver_connection = Driver()

        def close(self):
            closed.append(True)

    return Pooled()


def test_a_lost_database_is_unavailable_and_the_connection_goes_back(container, monkeypatch):
    engine, closed = container.engine, []
    lost = engine.dialect.loaded_dbapi.OperationalError("server closed the connection unexpectedly")
    monkeypatch.setattr(engine, "raw_connection", lambda: failing_connection(lost, closed))
    with pytest.raises(Unavailable):
        _TWO.first(engine, {"serial": "x", "school": "y"})
    assert closed == [True]


def test_other_errors_are_not_disguised_as_outages(container, monkeypatch):
    engine, closed = container.engine, []
    dbapi = engine.dialect.loaded_dbapi
    monkeypatch.setattr(engine, "raw_connection", lambda: failing_connection(dbapi.ProgrammingError("no column"), closed))
    with pytest.raises(dbapi.ProgrammingError):
        _TWO.first(engine, {"serial": "x", "school": "y"})
    assert closed == [True]
