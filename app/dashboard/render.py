"""Jinja2 rendering (autoescaped) with the dashboard's security headers."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

HERE = Path(__file__).resolve().parent
TEMPLATES_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"

#: pages load scripts and styles from this origin only, post forms only here, and are never framed
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def when(value: Any) -> str:
    """An ISO timestamp or datetime as ``YYYY-MM-DD HH:MM:SS UTC``; a dash when missing."""
    if not value:
        return "—"
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def seg(value: Any) -> str:
    """A value quoted as one URL path segment."""
    return quote(str(value), safe="")


def plain(value: Any) -> str:
    """An inventory value for people: lists joined, booleans as yes/no."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(plain(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {plain(v)}" for k, v in sorted(value.items()))
    return "—" if value is None else str(value)


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f} %" if whole else "—"


env = Environment(loader=FileSystemLoader(str(TEMPLATES_DIR)),
                  autoescape=select_autoescape(enabled_extensions=("html",), default=True),
                  undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
env.filters["when"] = when
env.filters["percent"] = percent
env.filters["seg"] = seg
env.filters["plain"] = plain

DEFAULTS = {"me": None, "csrf": "", "q": "", "org": "schoolmdm"}


def render(name: str, http_status: int = 200, **context: Any) -> HTMLResponse:
    ctx = {**DEFAULTS, **context}
    html = env.get_template(name).render(**ctx)
    return HTMLResponse(html, status_code=http_status, headers=SECURITY_HEADERS)


def redirect(url: str) -> RedirectResponse:
    """303 See Other: after a POST the browser GETs the next page."""
    return RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})


def error_page(status: int, message: str, **context: Any) -> HTMLResponse:
    titles = {400: "Bad request", 401: "Not logged in", 403: "Refused", 404: "Not found", 409: "Conflict",
              422: "Not valid", 503: "Unavailable"}
    return render("error.html", http_status=status, status_code=status, title=titles.get(status, "Error"),
                  message=message, **context)


def page_links(path: str, params: dict, total: int, limit: int, offset: int) -> dict:
    """Previous/next links for a paginated table; ``params`` are kept, ``offset`` replaced."""
    keep = {k: v for k, v in params.items() if v not in (None, "", False) and k != "offset"}

    def url(o: int) -> str:
        return path + "?" + urlencode({**keep, "offset": o}) if o else path + ("?" + urlencode(keep) if keep else "")

    return {"first": offset + 1 if total else 0, "last": min(offset + limit, total), "total": total,
            "prev": url(max(0, offset - limit)) if offset > 0 else None,
            "next": url(offset + limit) if offset + limit < total else None}


def safe_next(target: str | None) -> str:
    """A local path to go to after login (never another host)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
