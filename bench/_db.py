"""The bench's own database: a SQLite file in its data directory, or a fresh PostgreSQL
database ``schoolmdm_bench_<random>`` created for the run and dropped afterwards."""

from __future__ import annotations

import os
import secrets
import threading
import time
from pathlib import Path

DEFAULT_PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


class BenchDatabase:
    def __init__(self, kind: str, url: str, *, path: Path | None = None, pg_admin_url: str | None = None,
                 pg_name: str | None = None) -> None:
        self.kind, self.url, self.path = kind, url, path
        self.pg_admin_url, self.pg_name = pg_admin_url, pg_name
        self._monitor = None  # one connection for the sampler, not a new backend every second
        self._monitor_lock = threading.Lock()

    @classmethod
    def sqlite(cls, data_dir: Path) -> BenchDatabase:
        path = data_dir / "schoolmdm.db"
        return cls("sqlite", f"sqlite:///{path}", path=path)

    @classmethod
    def postgres(cls, admin_url: str = DEFAULT_PG_ADMIN_URL) -> BenchDatabase:
        import psycopg

        name = f"schoolmdm_bench_{secrets.token_hex(4)}"
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        base = admin_url.rsplit("/", 1)[0]
        return cls("postgres", f"{base}/{name}", pg_admin_url=admin_url, pg_name=name)

    def _admin(self):
        import psycopg

        return psycopg.connect(self.pg_admin_url, autocommit=True, connect_timeout=10)

    def size_bytes(self) -> dict:
        """{"bytes": total, ...parts}: the SQLite file plus its -wal, or pg_database_size."""
        if self.kind == "sqlite":
            assert self.path is not None
            parts = {}
            for suffix in ("", "-wal"):
                p = Path(f"{self.path}{suffix}")
                parts["db" + suffix.replace("-", "_")] = p.stat().st_size if p.exists() else 0
            return {"bytes": sum(parts.values()), **parts}
        with self._admin() as conn:
            n = conn.execute("SELECT pg_database_size(%s)", (self.pg_name,)).fetchone()[0]
        return {"bytes": int(n)}

    def backend_pids(self) -> list[int]:
        """PostgreSQL backends connected to the bench database (their CPU is the server's too)."""
        if self.kind != "postgres" or not self.pg_name:
            return []
        with self._monitor_lock:
            try:
                if self._monitor is None or self._monitor.closed:
                    self._monitor = self._admin()
                rows = self._monitor.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s",
                                             (self.pg_name,)).fetchall()
            except Exception:
                self.close_monitor_locked()
                raise
        return [r[0] for r in rows]

    def close_monitor_locked(self) -> None:
        if self._monitor is not None:
            try:
                self._monitor.close()
            except Exception:
                pass
            self._monitor = None

    def connections(self) -> dict:
        """max_connections, connections in use (all databases) and those of the bench database."""
        with self._admin() as conn:
            mx = int(conn.execute("SHOW max_connections").fetchone()[0])
            rows = conn.execute("SELECT datname, count(*) FROM pg_stat_activity GROUP BY datname").fetchall()
        used = sum(n for _, n in rows)
        ours = sum(n for d, n in rows if d == self.pg_name)
        return {"max_connections": mx, "in_use": used, "bench_database": ours}

    def connection_hint(self) -> str:
        try:
            c = self.connections()
        except Exception as e:
            return f"could not read pg_stat_activity: {e}"
        return (f"PostgreSQL max_connections={c['max_connections']}, {c['in_use']} in use now, "
                f"{c['bench_database']} by the bench server; each server worker's pool may open 30")

    def drop(self, attempts: int = 5, pause: float = 2.0) -> None:
        """Drop the bench database (retried: PostgreSQL may be restarting)."""
        if self.kind != "postgres" or not self.pg_name:
            return
        with self._monitor_lock:
            self.close_monitor_locked()
        for attempt in range(attempts):
            try:
                with self._admin() as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)')
                self.pg_name = None
                return
            except Exception:
                if attempt == attempts - 1:
                    raise
                time.sleep(pause)

    def describe(self) -> str:
        return str(self.path) if self.kind == "sqlite" else f"PostgreSQL database {self.pg_name}"


def redact(url: str) -> str:
    """A database URL without its password, for reports."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}@{host}" if ":" in creds else url


def env_without_overrides() -> dict[str, str]:
    """The current environment minus settings that would point the children elsewhere."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SCHOOLMDM_") and k != "DATABASE_URL"}
