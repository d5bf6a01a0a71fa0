"""Dashboard sessions: token login and logout, CSRF tokens, and HTML error pages.

The session *is* the API token, kept in the ``schoolmdm_token`` cookie (HttpOnly, Secure,
SameSite=Strict) that ``app/api/auth.py`` already accepts. Every login also gets a random
session id cookie; the CSRF token of the session is HMAC(key, session id, SHA-256(API token)),
so it changes with every login, cannot be computed without the server's key, and needs no
server-side state (any worker can check it).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from app.api.auth import make_principal_dependency
from app.dashboard.render import error_page, redirect, render, safe_next
from mdm.errors import Forbidden, MDMError, Unauthorized

log = logging.getLogger("schoolmdm.dashboard")

TOKEN_COOKIE = "schoolmdm_token"  # read by app/api/auth.py
SID_COOKIE = "schoolmdm_sid"
LOGIN_COOKIE = "schoolmdm_login"  # double-submit token of the login form (no session yet)
COOKIE = {"httponly": True, "secure": True, "samesite": "strict"}
KEY_FILE = "dashboard-csrf.key"


class CsrfRefused(Forbidden):
    code = "csrf_refused"


def load_key(data_dir: Path) -> bytes:
    """The CSRF key in ``DATA_DIR`` (mode 0600), created once; safe with several workers."""
    path = Path(data_dir) / KEY_FILE
    if path.exists():
        return path.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_bytes(32))
    try:
        os.link(tmp, path)  # atomic: the first worker's key wins
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_bytes()


def presented_token(request: Request) -> str | None:
    """The API token of this request, as app/api/auth.py finds it (bearer header, else cookie)."""
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else None
    return token or request.cookies.get(TOKEN_COOKIE) or None


class Csrf:
    def __init__(self, key: bytes) -> None:
        self.key = key

    def token(self, request: Request) -> str:
        api_token = presented_token(request) or ""
        sid = request.cookies.get(SID_COOKIE, "")
        msg = b"csrf\0" + sid.encode() + b"\0" + hashlib.sha256(api_token.encode()).digest()
        return hmac.new(self.key, msg, hashlib.sha256).hexdigest()

    def check(self, request: Request, submitted: str) -> None:
        if not presented_token(request):
            raise Unauthorized("not logged in")
        if not submitted or not hmac.compare_digest(self.token(request), submitted):
            raise CsrfRefused("the form's security token is missing or stale: reload the page and try again")


def to_login(request: Request):
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method != "GET" or target == "/":
        return redirect("/login")
    return redirect("/login?next=" + quote(target, safe=""))


def page_route(c, csrf: Csrf) -> type[APIRoute]:
    """Route class of the dashboard: not logged in → /login; refusals and errors → an HTML page
    (with the usual header when the token is valid), never JSON or a 500."""
    org = c.settings.org_name
    principal = make_principal_dependency(c)

    async def header(request: Request) -> dict:
        try:
            me = await principal(request)
        except MDMError:  # not logged in (or the database is away): a page without the user's header
            return {"org": org}
        return {"org": org, "me": me, "csrf": csrf.token(request)}

    class PageRoute(APIRoute):
        def get_route_handler(self):
            inner = super().get_route_handler()

            async def handler(request: Request):
                try:
                    return await inner(request)
                except Unauthorized:
                    return to_login(request)
                except MDMError as e:
                    if e.status_code >= 500:
                        log.warning("%s %s: %s", request.method, request.url.path, e.message)
                        return error_page(e.status_code, e.message, org=org)
                    return error_page(e.status_code, e.message, **await header(request))
                except RequestValidationError as e:
                    fields = ", ".join(".".join(str(p) for p in err.get("loc", ())[1:]) for err in e.errors())
                    return error_page(422, f"the request is not valid ({fields or 'parameters'})",
                                      **await header(request))

            return handler

    return PageRoute


def login_router(c, csrf: Csrf, route: type[APIRoute]) -> APIRouter:
    r = APIRouter(route_class=route, include_in_schema=False)
    org = c.settings.org_name

    def login_form(request: Request, *, status: int = 200, error: str | None = None, next_url: str = "/"):
        nonce = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
        resp = render("login.html", http_status=status, org=org, login_csrf=nonce, error=error,
                      next_url=safe_next(next_url))
        resp.set_cookie(LOGIN_COOKIE, nonce, path="/login", **COOKIE)
        return resp

    @r.get("/login")
    def login_page(request: Request, next: str = "/"):
        return login_form(request, next_url=next)

    @r.post("/login")
    async def login(request: Request, token: str = Form(""), login_csrf: str = Form(""), next: str = Form("/")):
        nonce = request.cookies.get(LOGIN_COOKIE, "")
        if not nonce or not hmac.compare_digest(nonce, login_csrf):
            return login_form(request, status=403, next_url=next,
                              error="The login form expired. Please enter your token again.")
        token = token.strip()
        info = await run_in_threadpool(c.tokens.resolve, token, c.clock()) if token else None
        if info is None:
            return login_form(request, status=401, next_url=next, error="This token is unknown or revoked.")
        await run_in_threadpool(c.audit.record, info["name"], "dashboard:login", None, None)
        resp = redirect(safe_next(next))
        resp.set_cookie(TOKEN_COOKIE, token, path="/", **COOKIE)
        resp.set_cookie(SID_COOKIE, secrets.token_urlsafe(24), path="/", **COOKIE)
        resp.delete_cookie(LOGIN_COOKIE, path="/login", **COOKIE)
        return resp

    @r.post("/logout")
    def logout(request: Request, csrf_token: str = Form("", alias="csrf")):
        csrf.check(request, csrf_token)
        resp = redirect("/login")
        for name in (TOKEN_COOKIE, SID_COOKIE):
            resp.delete_cookie(name, path="/", **COOKIE)
        return resp

    return r
