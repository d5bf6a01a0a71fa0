"""A small client for ``/api/v1``: bearer token, verified TLS, API errors as exit codes.

Where to connect comes from ``--server``/``--token``/``--ca-file`` or the environment
(``SCHOOLMDM_API_URL``, default the settings' public URL; ``SCHOOLMDM_API_TOKEN``;
``SCHOOLMDM_API_CA_FILE``, default the development CA ``<data_dir>/pki/ca.pem`` if it exists,
else the system CAs).
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Annotated, Any, Optional
from urllib.parse import quote

import httpx
import typer

from app.cli.common import EXIT_FORBIDDEN, EXIT_UNAVAILABLE, EXIT_USAGE, CliError, exit_code_for_status

ServerOpt = Annotated[Optional[str], typer.Option(
    "--server", envvar="SCHOOLMDM_API_URL", show_default=False, rich_help_panel="Connection",
    help="Server base URL, e.g. https://mdm.example.org (default: the settings' public_url)")]
TokenOpt = Annotated[Optional[str], typer.Option(
    "--token", envvar="SCHOOLMDM_API_TOKEN", show_default=False, rich_help_panel="Connection",
    help="API bearer token (prefer the environment variable: command lines are visible to others)")]
CaFileOpt = Annotated[Optional[Path], typer.Option(
    "--ca-file", envvar="SCHOOLMDM_API_CA_FILE", show_default=False, rich_help_panel="Connection",
    help="CA bundle to verify the server's TLS (default: <data_dir>/pki/ca.pem if present, else system CAs)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the API's JSON (for scripts).")]

TIMEOUT = httpx.Timeout(30.0, connect=10.0)


class ApiError(CliError):
    """An error reply of the API (``{"error": {"code", "message", "details"}}``)."""

    def __init__(self, status: int, code: str, message: str, details: dict | None = None) -> None:
        super().__init__(_describe(status, code, message, details or {}), exit_code_for_status(status))
        self.status = status
        self.code = code
        self.details = details or {}


def _describe(status: int, code: str, message: str, details: dict) -> str:
    text = message.rstrip(".")
    errors = details.get("errors") if isinstance(details, dict) else None
    if isinstance(errors, list) and errors:
        parts = []
        for e in errors[:5]:
            loc = ".".join(str(x) for x in (e.get("loc") or []) if x != "body")
            parts.append(f"{loc}: {e.get('msg', '')}" if loc else str(e.get("msg", "")))
        text += ": " + "; ".join(parts)
    return f"{text} ({code}, HTTP {status})"


def path(*segments: str) -> str:
    """``/a/b`` with every segment percent-encoded (UDIDs, names and ids are user input)."""
    return "/" + "/".join(quote(str(s), safe="") for s in segments)


def _default_server() -> str:
    from app.settings import get_settings

    return get_settings().public_url


def _verify(ca_file: Optional[Path]) -> ssl.SSLContext | bool:
    if ca_file is not None:
        if not Path(ca_file).is_file():
            raise CliError(f"CA file {str(ca_file)!r} does not exist", EXIT_USAGE)
        return ssl.create_default_context(cafile=str(ca_file))
    from app.settings import get_settings

    dev_ca = Path(get_settings().data_dir) / "pki" / "ca.pem"
    if dev_ca.is_file():
        return ssl.create_default_context(cafile=str(dev_ca))
    return True


class ApiClient:
    def __init__(self, server: str, token: str, verify: ssl.SSLContext | bool = True) -> None:
        base = server.rstrip("/")
        if base.endswith("/api/v1"):
            base = base[: -len("/api/v1")]
        if not base.startswith(("https://", "http://")):
            raise CliError(f"server URL must start with https:// (got {server!r})", EXIT_USAGE)
        self.server = base
        self._http = httpx.Client(base_url=base + "/api/v1", verify=verify, timeout=TIMEOUT,
                                  headers={"Authorization": f"Bearer {token}", "Accept": "application/json",
                                           "User-Agent": "schoolmdm-cli"})

    def __enter__(self) -> "ApiClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, url: str, *, params: dict | None = None, json: Any = None) -> Any:
        if params:
            params = {k: v for k, v in params.items() if v is not None}
        try:
            r = self._http.request(method, url, params=params or None, json=json)
        except httpx.ConnectError as e:
            if "CERTIFICATE_VERIFY_FAILED" in str(e) or isinstance(e.__cause__, ssl.SSLCertVerificationError):
                raise CliError(f"TLS verification of {self.server} failed ({_reason(e)}); "
                               "pass --ca-file or set SCHOOLMDM_API_CA_FILE") from None
            raise CliError(f"cannot reach {self.server}: {_reason(e)}", EXIT_UNAVAILABLE) from None
        except httpx.TimeoutException:
            raise CliError(f"{self.server} did not answer in time", EXIT_UNAVAILABLE) from None
        except httpx.TransportError as e:
            raise CliError(f"connection to {self.server} failed: {_reason(e)}", EXIT_UNAVAILABLE) from None
        if r.status_code >= 400:
            raise _error_of(r)
        if not r.content:
            return None
        try:
            return r.json()
        except ValueError:
            raise CliError(f"{self.server} answered {method} {url} with something that is not JSON "
                           f"(HTTP {r.status_code}, {r.headers.get('content-type', 'no content type')})") from None

    def get(self, url: str, **params: Any) -> Any:
        return self.request("GET", url, params=params)

    def post(self, url: str, json: Any = None) -> Any:
        return self.request("POST", url, json=json if json is not None else {})

    def delete(self, url: str) -> Any:
        return self.request("DELETE", url)


def _reason(e: Exception) -> str:
    return str(e) or type(e).__name__


def _error_of(r: httpx.Response) -> CliError:
    try:
        err = r.json()["error"]
        return ApiError(r.status_code, str(err.get("code", "error")), str(err.get("message", "")),
                        err.get("details") or {})
    except (ValueError, KeyError, TypeError, AttributeError):
        reason = r.reason_phrase or "error"
        return ApiError(r.status_code, "http_error", f"the server answered {reason}")


def connect(server: Optional[str], token: Optional[str], ca_file: Optional[Path]) -> ApiClient:
    """An API client from the options (already filled from the environment by Typer)."""
    token = (token or "").strip()
    if not token:
        raise CliError("no API token: pass --token or set SCHOOLMDM_API_TOKEN "
                       "(an admin creates one with 'schoolmdm tokens create' or, on the server, "
                       "'schoolmdm admin-token')", EXIT_FORBIDDEN)
    if not token.isascii() or not token.isprintable() or any(ch.isspace() for ch in token):
        raise CliError("the API token contains characters a token never has (check SCHOOLMDM_API_TOKEN)", EXIT_USAGE)
    return ApiClient(server or _default_server(), token, _verify(ca_file))
