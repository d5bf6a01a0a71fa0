"""Statements built once and run on the DB-API connection, in a transaction of their own.

Every device request records its report and hands out the next command: about six statements in
one or two transactions. Through SQLAlchemy's Connection each statement costs ~25-30 us of Python
around ~10 us of SQLite, and each transaction ~40 us more (connection object, events, result
objects). ``RawStatement`` compiles a Core statement once per dialect and keeps what SQLAlchemy
would do to the values (its bind and result processors: SQLite's date strings, booleans), so the
rows are the ones SQLAlchemy would write and read; ``raw_tx`` is the transaction around them, with
the same locking as everywhere else (SQLite's writers pass the write gate with ``BEGIN
IMMEDIATE``, readers use plain ``BEGIN``) and outages turned into ``Unavailable``.

``held_connection`` keeps one pooled connection for a whole device request, so its read and its
transactions check out once (on PostgreSQL a checkout after a pause is also a ping round trip), and
``RawSelect`` reads without a transaction of its own (on PostgreSQL: no BEGIN and ROLLBACK round
trips around one statement). A ``raw_tx`` opened inside another on the same engine joins it: an
acknowledgement and what it tells us about the device commit together, in one transaction.

Used for the device hot path only; everything else stays on the ORM or Core.
"""

from __future__ import annotations

from collections import namedtuple
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Iterator, NamedTuple

from sqlalchemy.engine import Engine

from app.storage.sql_base import driver_outages_unavailable, outages_unavailable


class _Plan(NamedTuple):
    sql: str
    names: tuple[str, ...] | None  # the parameters' names for a driver that takes them by name
    binds: tuple[tuple[str, Any, bool, Any], ...]  # (name, default, required, processor)
    row: type | None  # a namedtuple of the selected columns
    results: tuple[tuple[int, Any], ...]  # (column index, result processor)


class RawStatement:
    def __init__(self, stmt) -> None:
        self.stmt = stmt
        self._plans: dict[str, _Plan] = {}

    def plan(self, dialect) -> _Plan:
        p = self._plans.get(dialect.name)
        if p is None:
            p = self._plans[dialect.name] = self._compile(dialect)
        return p

    def _compile(self, dialect) -> _Plan:
        compiled = self.stmt.compile(dialect=dialect)
        if compiled.escaped_bind_names:
            raise ValueError("bind parameter names that need escaping are not supported")
        by_name = {name: bp for bp, name in compiled.bind_names.items()}
        names = compiled.positiontup if compiled.positional else list(by_name)
        procs = compiled._bind_processors
        binds = tuple((n, None if by_name[n].required else by_name[n].effective_value, by_name[n].required,
                       procs.get(n)) for n in names)
        row, results = None, ()
        if getattr(self.stmt, "is_select", False):
            cols = list(self.stmt.selected_columns)
            row = namedtuple("Row", [c.key for c in cols], rename=True)
            results = tuple((i, proc) for i, c in enumerate(cols)
                            if (proc := c.type._cached_result_processor(dialect, None)) is not None)
        return _Plan(str(compiled), None if compiled.positional else tuple(names), binds, row, results)


class RawTx:
    """The statements of one transaction (see ``raw_tx``)."""

    __slots__ = ("cursor", "dialect")

    def __init__(self, cursor, dialect) -> None:
        self.cursor = cursor
        self.dialect = dialect

    def _execute(self, stmt: RawStatement, params: dict[str, Any]) -> _Plan:
        p = stmt.plan(self.dialect)
        values = []
        for name, default, required, proc in p.binds:
            v = params[name] if required else params.get(name, default)
            values.append(proc(v) if proc is not None and v is not None else v)
        self.cursor.execute(p.sql, values if p.names is None else dict(zip(p.names, values)))
        return p

    def _row(self, p: _Plan, raw):
        if p.results:
            raw = list(raw)
            for i, proc in p.results:
                raw[i] = proc(raw[i])
        return p.row._make(raw)

    def first(self, stmt: RawStatement, params: dict[str, Any]):
        p = self._execute(stmt, params)
        raw = self.cursor.fetchone()
        return None if raw is None else self._row(p, raw)

    def all(self, stmt: RawStatement, params: dict[str, Any]) -> list:
        p = self._execute(stmt, params)
        return [self._row(p, r) for r in self.cursor.fetchall()]

    def run(self, stmt: RawStatement, params: dict[str, Any]) -> int:
        """An INSERT, UPDATE or DELETE; the number of rows it touched."""
        self._execute(stmt, params)
        return self.cursor.rowcount


_HELD: ContextVar[tuple[Engine, Any] | None] = ContextVar("schoolmdm_held_connection", default=None)
#: the raw transaction open in this context: (engine, its statements, read-only)
_OPEN: ContextVar[tuple[Engine, RawTx, bool] | None] = ContextVar("schoolmdm_open_raw_tx", default=None)


def in_raw_tx(engine: Engine) -> bool:
    """Whether a ``raw_tx`` on ``engine`` is open in this context."""
    o = _OPEN.get()
    return o is not None and o[0] is engine


def _checkout(engine: Engine):
    with outages_unavailable():
        return engine.raw_connection()  # the pool's checkout (and PostgreSQL's ping after a pause)


@contextmanager
def held_connection(engine: Engine) -> Iterator[None]:
    """Within this block, ``raw_tx`` and ``RawSelect`` on ``engine`` share one pooled connection
    (nested blocks keep the outer one). It holds no lock between transactions."""
    if _HELD.get() is not None:
        yield
        return
    fairy = _checkout(engine)
    token = _HELD.set((engine, fairy))
    try:
        yield
    finally:
        _HELD.reset(token)
        fairy.close()  # back to the pool (which rolls back anything left open)


@contextmanager
def _connection(engine: Engine):
    held = _HELD.get()
    if held is not None and held[0] is engine:
        yield held[1]
        return
    fairy = _checkout(engine)
    try:
        yield fairy
    finally:
        fairy.close()


class RawSelect(RawStatement):
    """A SELECT run on its own, with no transaction around it (one statement sees one consistent
    state, and on PostgreSQL is its own transaction): the device-auth read every device request
    makes, and on PostgreSQL an Idle's whole write (a SELECT whose CTEs write: ``sql_queue_pg``)."""

    def first(self, engine: Engine, params: dict[str, Any]):
        dbapi = engine.dialect.loaded_dbapi
        with _connection(engine) as fairy, driver_outages_unavailable(dbapi):
            conn = fairy.driver_connection
            # SQLite's connections run statements outside BEGIN as they are (make_engine); psycopg
            # would open a transaction: in autocommit it sends the statement alone
            auto = engine.dialect.name == "postgresql" and not conn.autocommit and conn.info.transaction_status == 0
            if auto:
                conn.autocommit = True
            try:
                cur = conn.cursor()
                try:
                    return RawTx(cur, engine.dialect).first(self, params)
                finally:
                    cur.close()
            finally:
                if auto:
                    conn.autocommit = False


@contextmanager
def raw_tx(engine: Engine, *, readonly: bool = False) -> Iterator[RawTx]:
    """One transaction on a pooled DB-API connection: committed when the block ends, rolled back
    when it raises. ``readonly`` on SQLite neither waits for nor takes the write lock.

    Inside an open ``raw_tx`` on the same engine this joins it: no BEGIN or COMMIT of its own; what
    it raises rolls the outer transaction back. A write cannot join a read-only transaction."""
    outer = _OPEN.get()
    if outer is not None and outer[0] is engine:
        if outer[2] and not readonly:
            raise RuntimeError("a write cannot join a read-only transaction")
        yield outer[1]
        return
    dbapi = engine.dialect.loaded_dbapi
    with _connection(engine) as fairy, driver_outages_unavailable(dbapi):
        conn = fairy.driver_connection
        if engine.dialect.name == "sqlite":  # (PostgreSQL's driver opens the transaction itself)
            conn.execute("BEGIN") if readonly else conn.begin_write()  # GatedConnection: make_engine
        cursor = conn.cursor()
        tx = RawTx(cursor, engine.dialect)
        token = _OPEN.set((engine, tx, readonly))
        try:
            yield tx
        except BaseException:
            try:
                conn.rollback()
            except dbapi.Error:
                pass  # the connection is gone; the pool drops it
            raise
        finally:
            _OPEN.reset(token)
            cursor.close()
        conn.commit()
