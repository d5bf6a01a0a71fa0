"""The SQLite write gate: writers queue in and across processes, readers never wait, and the gate
is given back however a transaction ends."""

from __future__ import annotations

import multiprocessing as mp
import threading
import time

import pytest
from sqlalchemy import text

from app.db.engine import make_engine
from app.db.sqlite_gate import gate_for
from app.storage.sql_base import READONLY

def _engine(tmp_path):
    e = make_engine(f"sqlite:///{tmp_path}/gate.db")
    with e.begin() as c:
        c.execute(text("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, who TEXT, n INTEGER)"))
    return e


def _held(gate) -> bool:
    got = gate._threads.acquire(blocking=False)
    if got:
        gate._threads.release()
    return not got


def test_released_after_commit_rollback_error_and_close(tmp_path):
    e = _engine(tmp_path)
    gate = gate_for(f"{tmp_path}/gate.db", 30)
    with e.begin() as c:
        c.execute(text("INSERT INTO t (who, n) VALUES ('a', 1)"))
        assert _held(gate)
    assert not _held(gate)
    with pytest.raises(RuntimeError):
        with e.begin() as c:
            c.execute(text("INSERT INTO t (who, n) VALUES ('b', 1)"))
            raise RuntimeError("boom")
    assert not _held(gate)
    with e.connect() as c:  # returned to the pool without commit: the pool's reset rolls back
        c.begin()
        c.execute(text("INSERT INTO t (who, n) VALUES ('c', 1)"))
        assert _held(gate)
    assert not _held(gate)
    with e.connect() as c:
        assert c.execute(text("SELECT who FROM t ORDER BY id")).scalars().all() == ["a"]
    raw = e.raw_connection()
    raw.driver_connection.begin_write()
    assert _held(gate)
    raw.invalidate()  # closes the driver connection mid-transaction
    assert not _held(gate)
    e.dispose()


def test_readers_do_not_wait_for_a_writer(tmp_path):
    e = _engine(tmp_path)
    with e.connect() as w:
        w.begin()
        w.execute(text("INSERT INTO t (who, n) VALUES ('w', 1)"))
        t0 = time.perf_counter()
        with e.connect() as r:
            r.execution_options(**READONLY)
            with r.begin():
                assert r.execute(text("SELECT count(*) FROM t")).scalar() == 0  # the last committed state
        assert time.perf_counter() - t0 < 1.0
        w.commit()
    e.dispose()


def test_waiting_writer_times_out_as_locked(tmp_path):
    e = _engine(tmp_path)
    gate = gate_for(f"{tmp_path}/gate.db", 30)
    gate.timeout, saved = 0.2, gate.timeout
    try:
        done = threading.Event()
        errors: list[Exception] = []

        def second():
            try:
                with e.begin() as c:
                    c.execute(text("INSERT INTO t (who, n) VALUES ('late', 1)"))
            except Exception as ex:  # noqa: BLE001 - the test looks at it
                errors.append(ex)
            done.set()

        with e.begin() as c:
            c.execute(text("INSERT INTO t (who, n) VALUES ('first', 1)"))
            threading.Thread(target=second).start()
            assert done.wait(5)
        assert errors and "database is locked" in str(errors[0])
    finally:
        gate.timeout = saved
    with e.begin() as c:  # and the gate still works afterwards
        c.execute(text("INSERT INTO t (who, n) VALUES ('after', 1)"))
    e.dispose()


def _counter(path: str, who: str, n: int) -> None:
    e = make_engine(f"sqlite:///{path}")
    for _ in range(n):
        with e.begin() as c:  # read-modify-write: lost updates if two writers overlapped
            cur = c.execute(text("SELECT n FROM t WHERE who = 'total'")).scalar()
            c.execute(text("UPDATE t SET n = :n WHERE who = 'total'"), {"n": cur + 1})
    e.dispose()


def test_writers_in_several_processes_and_threads_take_turns_without_hanging(tmp_path):
    e = _engine(tmp_path)
    with e.begin() as c:
        c.execute(text("INSERT INTO t (who, n) VALUES ('total', 0)"))
    path = f"{tmp_path}/gate.db"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_counter, args=(path, f"p{i}", 150)) for i in range(2)]
    threads = [threading.Thread(target=_counter, args=(path, f"t{i}", 150)) for i in range(3)]
    for p in procs:
        p.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with e.connect() as c:
        assert c.execute(text("SELECT n FROM t WHERE who = 'total'")).scalar() == 5 * 150
    e.dispose()
