"""JSON API v1: routes parse, call a service, return JSON; errors go through app/errors.py."""

from __future__ import annotations

from fastapi import APIRouter

from app.api import admin, blueprints, commands, devices, schools
from app.api import loans, roster


def make_api_router(c) -> APIRouter:
    r = APIRouter()
    for module in (devices, commands, schools, blueprints, admin, roster, loans):
        r.include_router(module.router(c))
    return r
