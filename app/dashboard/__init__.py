"""Server-rendered dashboard for technicians and the support desk (Jinja2, little JavaScript).

``make_dashboard_router(container)`` gives the pages and forms; ``static_files()`` serves the
stylesheet and the job page's polling script under ``/static``.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.staticfiles import StaticFiles

from app.dashboard.actions import actions_router
from app.dashboard.pages import pages_router
from app.dashboard.queries import DashboardQueries
from app.dashboard.render import STATIC_DIR
from app.dashboard.session import Csrf, load_key, login_router, page_route

STATIC_PATH = "/static"


def make_dashboard_router(container) -> APIRouter:
    csrf = Csrf(load_key(container.settings.data_dir))
    queries = DashboardQueries(container.sessions, clock=container.clock)
    route = page_route(container, csrf)
    r = APIRouter(include_in_schema=False)
    r.include_router(login_router(container, csrf, route))
    r.include_router(pages_router(container, csrf, queries, route))
    r.include_router(actions_router(container, csrf, route))
    return r


def static_files() -> StaticFiles:
    return StaticFiles(directory=str(STATIC_DIR))


__all__ = ["STATIC_PATH", "make_dashboard_router", "static_files"]
