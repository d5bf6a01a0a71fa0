"""Shared pieces of the API modules."""

from __future__ import annotations

from fastapi import Depends

from app.api.auth import Principal, make_principal_dependency

MOBILECONFIG = "application/x-apple-aspen-config"


def auth(c):
    return Depends(make_principal_dependency(c))


def scope(me: Principal) -> list[str] | None:
    return list(me.schools) if me.schools is not None else None


def page(limit: int, offset: int) -> dict:
    return {"limit": limit, "offset": offset}


__all__ = ["MOBILECONFIG", "Principal", "auth", "scope", "page"]
