"""Shared plumbing for the SQLAlchemy stores."""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Any, Iterator

from sqlalchemy import literal_column
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from mdm.errors import Unavailable


class SQLStore:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    @contextmanager
    def tx(self, *, readonly: bool = False) -> Iterator[Session]:
        """One short transaction; database outages become 503 Unavailable.

        ``readonly`` transactions do not take SQLite's write lock (on PostgreSQL it changes nothing).
        Not inside a ``raw_tx`` (it would be a second transaction, and on SQLite wait for the
        first's write lock for ever).
        """
        from app.storage.sql_raw import in_raw_tx  # (sql_raw builds on this module)

        if in_raw_tx(self.engine):
            raise RuntimeError("an ORM transaction cannot run inside a raw transaction")
        with outages_unavailable(), self.sessions.begin() as s:
            if readonly:
                s.connection(execution_options=READONLY)
            yield s

    @contextmanager
    def conn(self, *, readonly: bool = False) -> Iterator[Connection]:
        """Like ``tx`` but a Core connection: for the device hot path, with statements built once
        (no ORM session, no unit of work)."""
        with outages_unavailable(), self.engine.connect() as c:
            if readonly:
                c.execution_options(**READONLY)
            with c.begin():
                yield c

    @property
    def engine(self) -> Engine:
        return self.sessions.kw["bind"]

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name


READONLY = {"schoolmdm_readonly": True}


@contextmanager
def outages_unavailable() -> Iterator[None]:
    try:
        yield
    except (OperationalError, InterfaceError) as e:
        if _is_outage(e):
            raise Unavailable("database unavailable, retry later") from e
        raise


@contextmanager
def driver_outages_unavailable(dbapi) -> Iterator[None]:
    """``outages_unavailable`` for errors straight from the driver (``dbapi``: its module)."""
    try:
        yield
    except (dbapi.OperationalError, dbapi.InterfaceError) as e:
        if _is_outage(e):
            raise Unavailable("database unavailable, retry later") from e
        raise


def _is_outage(e: Exception) -> bool:
    msg = str(e).lower()
    return any(s in msg for s in ("connection", "server closed", "terminating", "could not connect",
                                   "database is locked", "no route", "timeout"))


def one_of(column, values: tuple[str, ...]):
    """``column IN ('a', 'b')`` with the constants in the SQL text, for statements built once: an
    ``in_()`` of Python values is an "expanding" parameter that SQLAlchemy re-renders on every
    execution (measured: 4% of the server's time in command round trips), and SQLite matches a
    partial index's WHERE only against literal terms."""
    for v in values:
        if not v.replace("_", "").isalnum():
            raise ValueError(f"not a plain constant: {v!r}")
    return column.in_([literal_column(f"'{v}'") for v in values])


def dumps_json(obj: Any) -> str:
    return json.dumps(obj, default=_default, sort_keys=True)


def _default(o: Any) -> Any:
    if isinstance(o, bytes):
        import base64

        return {"$data": base64.b64encode(o).decode()}
    if hasattr(o, "isoformat"):
        return o.isoformat()
    return str(o)
