"""Test databases: a fresh SQLite file, or a fresh PostgreSQL database when DATABASE_URL is set."""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool
from sqlalchemy.engine import make_url

from app.db.migrate import upgrade
from app.db.models import Base


def backend() -> str:
    url = os.environ.get("DATABASE_URL", "")
    return "postgresql" if url.startswith("postgres") else "sqlite"


def _pg_url(url: str) -> str:
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


LOCAL_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@contextmanager
def postgres_database(*, only_in_postgres_run: bool = True) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database on DATABASE_URL's server; skip if none.

    Tests that need PostgreSQL whatever the suite's backend run in the PostgreSQL pass of
    ``.ci/run`` (DATABASE_URL set) only, so the two passes do not repeat them; benchmarks pass
    ``only_in_postgres_run=False`` to use the local server."""
    import pytest

    base = os.environ.get("DATABASE_URL")
    if not (base and base.startswith("postgres")):
        if only_in_postgres_run:
            pytest.skip("runs in the PostgreSQL pass (set DATABASE_URL=postgresql://...)")
        base = LOCAL_PG
    else:
        base = _pg_url(base)
    try:
        create_engine(base).connect().close()
    except Exception as e:  # no server here: the test cannot run
        pytest.skip(f"needs PostgreSQL ({type(e).__name__})")
    with _pg_fresh(base) as url:
        yield url


@contextmanager
def _pg_fresh(base: str) -> Iterator[str]:
    name = f"schoolmdm_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT", poolclass=NullPool)  # survives a server restart
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        with admin.connect() as c:
            c.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@contextmanager
def fresh_database(tmp_dir) -> Iterator[str]:
    """Yield the URL of an empty database with the real migrations applied."""
    base = os.environ.get("DATABASE_URL")
    if base and base.startswith("postgres"):
        with _pg_fresh(_pg_url(base)) as url:
            yield url
    else:
        url = f"sqlite:///{tmp_dir}/schoolmdm-test.db"
        upgrade(url)
        yield url


def truncate_all(engine) -> None:
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with engine.begin() as c:
        if engine.dialect.name == "postgresql":
            c.execute(text("TRUNCATE " + ", ".join(tables) + " RESTART IDENTITY CASCADE"))
        else:
            for t in tables:
                c.execute(text(f"DELETE FROM {t}"))
