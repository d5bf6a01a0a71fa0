"""Engine and session factory for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

from app.db.sqlite_gate import GatedConnection, gate_for

BUSY_TIMEOUT = 30.0
PAGE_CACHE_KIB = 1024


def make_engine(url: str, **kw) -> Engine:
    # SQL echo and database errors never show parameter values: they carry secrets (webhook
    # secrets, push and unlock tokens, profile payloads with Wi-Fi passwords)
    kw.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1].split("?", 1)[0]
        gate = None
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            gate = gate_for(path, BUSY_TIMEOUT)  # writers queue, not poll: see app/db/sqlite_gate.py
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT,
                                                  "factory": GatedConnection},
                               pool_size=8, max_overflow=8, **kw)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _rec):  # pragma: no cover - trivial
            # take control of transactions so writers start with BEGIN IMMEDIATE
            dbapi_conn.isolation_level = None
            dbapi_conn.gate = gate
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT * 1000)}")
            # 1 MiB of page cache per connection (SQLite's default is 2 MiB): a worker keeps up to 16
            # connections, and the file's pages stay in the operating system's cache anyway
            cur.execute(f"PRAGMA cache_size=-{PAGE_CACHE_KIB}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn):  # pragma: no cover - trivial
            # writers take the write lock up front (no lock upgrade deadlocks); readers don't queue
            # behind them: WAL lets them read the last committed state
            # (straight to the driver: this runs for every transaction, and BEGIN has no parameters)
            driver = conn.connection.driver_connection
            if conn.get_execution_options().get("schoolmdm_readonly"):
                driver.execute("BEGIN")
            else:
                driver.begin_write()

        return engine
    # Connections are kept, not churned: a connection opened beyond pool_size is closed when it comes
    # back, and each new PostgreSQL backend costs ~13 ms of CPU (fork, start-up, catalog caches):
    # measured in a 2,000-iPad storm with pool_size=5, 738 new sessions and 9.8 s of PostgreSQL CPU
    # the bench could not see. pool_size covers the device threads (Container.device_threads, 16)
    # and the API's usual load; overflow up to 40 per process (anyio's default thread limiter) for bursts.
    engine = create_engine(url, **{"pool_size": 20, "max_overflow": 20, "pool_timeout": 60, **kw})
    _ping_when_idle(engine, PING_IDLE_AFTER)
    return engine


#: a pooled PostgreSQL connection idle for longer than this is pinged before it is handed out
PING_IDLE_AFTER = 10.0


def _ping_when_idle(engine: Engine, after: float) -> None:
    """Check a pooled connection before handing it out only when it has been idle for ``after``
    seconds (like PgBouncer's ``server_check_delay``), not on every checkout as ``pool_pre_ping``
    does: under load a connection comes back and goes out again within milliseconds, and the ping
    was one network round trip in five of a device request (measured: 9.5% of the server's CPU
    in a 4,000-iPad PostgreSQL storm). A connection that went bad while it was in use fails that
    request (503: the device retries) and is dropped when it comes back to the pool."""

    @event.listens_for(engine, "checkin")
    def _idle_since(_dbapi_conn, record):
        if record is not None:
            record.info["schoolmdm_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_conn, record, _proxy):
        since = record.info.get("schoolmdm_idle_since")  # (a new connection has none: it was just made)
        if since is None or time.monotonic() - since < after:
            return
        try:
            ok = engine.dialect.do_ping(dbapi_conn)
        except engine.dialect.loaded_dbapi.Error:
            ok = False
        if not ok:
            raise DisconnectionError("the pooled connection did not answer a ping")  # the pool reconnects


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
