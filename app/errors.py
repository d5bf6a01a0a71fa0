"""The one place where errors become HTTP replies: ``{"error": {"code", "message", "details"}}``."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from mdm.errors import MDMError

log = logging.getLogger("schoolmdm.http")


def error_body(code: str, message: str, details: dict | None = None) -> dict:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def mdm_error_response(exc: MDMError, method: str, path: str) -> JSONResponse:
    """The reply to an MDMError, for the exception handler and the plain-ASGI device endpoints."""
    if exc.status_code >= 500:
        log.warning("%s %s: %s", method, path, exc.message)
    else:
        log.info("%s %s refused (%s): %s", method, path, exc.code, exc.message)
    headers = {"Retry-After": "5"} if exc.status_code in (429, 503) else None
    return JSONResponse(error_body(exc.code, exc.message, exc.details), status_code=exc.status_code,
                        headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(MDMError)
    async def _mdm(request: Request, exc: MDMError):
        return mdm_error_response(exc, request.method, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
        return JSONResponse(error_body("validation_failed", "request is not valid", {"errors": errors}),
                            status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 403: "forbidden"}.get(
            exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))
