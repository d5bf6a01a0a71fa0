"""Plist fixtures shaped like real iPad messages, with placeholders filled per test device."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from app.db.models import Base

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def fixture(kind: str, name: str, **values: str) -> bytes:
    text = (FIXTURES / kind / f"{name}.plist").read_text()
    for k, v in values.items():
        text = text.replace("{{" + k.upper() + "}}", v)
    return text.encode()


def snapshot(engine) -> dict:
    """Every row of every table: compare before/after to prove nothing changed."""
    out = {}
    with engine.connect() as c:
        for t in Base.metadata.sorted_tables:
            if t.name in ("api_tokens",):
                continue
            rows = c.execute(select(t)).all()
            out[t.name] = sorted(tuple(str(v) for v in r) for r in rows)
    return out
