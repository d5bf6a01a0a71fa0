"""Shared pieces of the API modules."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path

from app.api.auth import Principal, make_principal_dependency

MOBILECONFIG = "application/x-apple-aspen-config"
#: the largest id, version or offset a request may carry: PostgreSQL's INTEGER (SQLite refuses past 64 bits)
MAX_INT = 2**31 - 1
#: an integer id in a path
IntId = Annotated[int, Path(ge=1, le=MAX_INT)]


def auth(c):
    return Depends(make_principal_dependency(c))


def scope(me: Principal) -> list[str] | None:
    return list(me.schools) if me.schools is not None else None


def page(limit: int, offset: int) -> dict:
    return {"limit": limit, "offset": offset}


__all__ = ["MAX_INT", "IntId", "MOBILECONFIG", "Principal", "auth", "scope", "page"]
