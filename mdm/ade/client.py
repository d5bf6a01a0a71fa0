"""Client of Apple's device assignment API (``https://mdmenrollment.apple.com``).

``GET /session`` (signed with OAuth 1.0a from the server token) yields a session token
sent as ``X-ADM-Auth-Session`` with every call (``X-Server-Protocol-Version: 3``); Apple
may hand a fresh one back in a response header, and a 401/403 for an expired session
gets a new session once. 429 and 503 are retried after ``Retry-After``, other 5xx and
transport errors with exponential backoff; a request that still fails raises
``ADEUnavailable`` and the caller keeps its cursor. Cursor trouble (``EXPIRED_CURSOR``,
``INVALID_CURSOR``, ``EXHAUSTED_CURSOR``, ``CURSOR_REQUIRED``) raises ``ADECursorError``.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx

from mdm.ade import oauth
from mdm.ade.errors import ADEAuthError, ADECursorError, ADERequestError, ADEUnavailable
from mdm.ade.token import ServerToken

log = logging.getLogger("schoolmdm.ade")

DEFAULT_URL = "https://mdmenrollment.apple.com"
PROTOCOL_VERSION = "3"
SESSION_HEADER = "X-ADM-Auth-Session"
MAX_LIMIT = 1000  # devices per fetch/sync page and per assignment request
CURSOR_REASONS = frozenset({"EXPIRED_CURSOR", "INVALID_CURSOR", "EXHAUSTED_CURSOR", "CURSOR_REQUIRED"})
MAX_RETRY_AFTER = 300.0


@dataclass(frozen=True)
class DevicePage:
    devices: list[dict]
    cursor: str | None
    more_to_follow: bool
    fetched_until: str | None = None


def _reason(r: httpx.Response) -> str:
    """Apple's error code: a bare string body, or ``code``/``error`` in JSON."""
    text = r.text.strip()
    try:
        doc = json.loads(text)
    except ValueError:
        return text[:200]
    if isinstance(doc, dict):
        return str(doc.get("code") or doc.get("error") or doc.get("message") or text)[:200]
    return str(doc)[:200]


def _retry_after(r: httpx.Response) -> float | None:
    value = r.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class ADEClient:
    """Synchronous (the sync service runs in a worker thread); one session token, renewed as needed."""

    def __init__(self, token: ServerToken, base_url: str = DEFAULT_URL, *, http: httpx.Client | None = None,
                 verify=True, timeout: float = 30.0, max_retries: int = 6, backoff: float = 1.0,
                 max_backoff: float = 60.0, sleep: Callable[[float], None] = time.sleep,
                 user_agent: str = "schoolmdm/0.1") -> None:
        self.token = token
        self.base_url = base_url.rstrip("/")
        self._own_http = http is None
        self.http = http or httpx.Client(verify=verify, timeout=timeout)
        self.max_retries, self.backoff, self.max_backoff = max_retries, backoff, max_backoff
        self.sleep = sleep
        self.user_agent = user_agent
        self.session: str | None = None
        self.stats = {"requests": 0, "retries": 0, "sessions": 0}

    def close(self) -> None:
        if self._own_http:
            self.http.close()

    def __enter__(self) -> ADEClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ----------------------------------------------------------------------------
    def _wait(self, attempt: int, r: httpx.Response | None) -> None:
        after = _retry_after(r) if r is not None else None
        if after is None:
            after = min(self.max_backoff, self.backoff * 2 ** attempt) * (0.5 + random.random() / 2)
        self.stats["retries"] += 1
        self.sleep(min(after, MAX_RETRY_AFTER))

    def _send(self, method: str, url: str, **kw) -> httpx.Response:
        """One HTTP exchange with retries for 429/5xx/transport errors; other statuses are returned."""
        last = "no answer"
        for attempt in range(self.max_retries + 1):
            r = None
            try:
                self.stats["requests"] += 1
                r = self.http.request(method, url, **kw)
            except httpx.TransportError as e:
                last = f"{type(e).__name__}: {e}"
            else:
                if r.status_code != 429 and r.status_code < 500:
                    return r
                last = f"HTTP {r.status_code} {_reason(r)}".strip()
            if attempt < self.max_retries:
                log.info("ADE %s %s: %s, retrying", method, url.rsplit("/", 2)[-1], last)
                self._wait(attempt, r)
        raise ADEUnavailable(f"Apple's device assignment service is unavailable ({last}); try again later",
                             reason=last, status=r.status_code if r is not None else None)

    def new_session(self) -> str:
        url = f"{self.base_url}/session"
        t = self.token
        auth = oauth.authorization_header("GET", url, consumer_key=t.consumer_key, consumer_secret=t.consumer_secret,
                                          token=t.access_token, token_secret=t.access_secret)
        r = self._send("GET", url, headers={"Authorization": auth, "User-Agent": self.user_agent})
        if r.status_code != 200:
            reason = _reason(r)
            if r.status_code in (401, 403):
                raise ADEAuthError(f"the ADE server token was rejected ({reason}): download a new one from "
                                   "Apple School Manager and upload it", reason=reason, status=r.status_code)
            raise ADERequestError(f"GET /session answered {r.status_code} ({reason})", reason=reason,
                                  status=r.status_code)
        try:
            session = r.json()["auth_session_token"]
        except (ValueError, KeyError, TypeError):
            raise ADERequestError("GET /session answered without auth_session_token") from None
        self.session = str(session)
        self.stats["sessions"] += 1
        return self.session

    def request(self, method: str, path: str, *, body: dict | list | None = None,
                params: dict | None = None) -> dict:
        """An authenticated API call; returns the JSON answer."""
        renewed = False  # one new session per call when the current one is refused
        while True:
            if self.session is None:
                self.new_session()
            headers = {SESSION_HEADER: self.session or "", "X-Server-Protocol-Version": PROTOCOL_VERSION,
                       "User-Agent": self.user_agent, "Content-Type": "application/json;charset=UTF8"}
            content = json.dumps(body).encode() if body is not None else None
            r = self._send(method, f"{self.base_url}{path}", headers=headers, content=content, params=params)
            if r.headers.get(SESSION_HEADER):
                self.session = r.headers[SESSION_HEADER]
            if r.status_code == 200:
                try:
                    return r.json() if r.content else {}
                except ValueError:
                    raise ADERequestError(f"{method} {path} answered with something that is not JSON") from None
            reason = _reason(r)
            if r.status_code in (401, 403) and reason != "T_C_NOT_SIGNED":
                if not renewed:  # the session token expired: get a new one, once
                    self.session, renewed = None, True
                    continue
                raise ADEAuthError(f"{method} {path} refused even with a new session ({reason})",
                                   reason=reason, status=r.status_code)
            if r.status_code == 403:
                raise ADEAuthError("Apple's terms and conditions must be accepted in Apple School Manager "
                                   "(T_C_NOT_SIGNED)", reason=reason, status=403)
            if reason in CURSOR_REASONS:
                raise ADECursorError(f"{method} {path}: {reason}", reason=reason, status=r.status_code)
            raise ADERequestError(f"{method} {path} answered {r.status_code} ({reason})", reason=reason,
                                  status=r.status_code)

    # -- the API ----------------------------------------------------------------------------
    def account(self) -> dict:
        return self.request("GET", "/account")

    @staticmethod
    def _page(doc: dict) -> DevicePage:
        devices = doc.get("devices") or []
        return DevicePage([d for d in devices if isinstance(d, dict)], doc.get("cursor"),
                          bool(doc.get("more_to_follow")), doc.get("fetched_until"))

    def fetch_devices(self, cursor: str | None = None, limit: int = MAX_LIMIT) -> DevicePage:
        """One page of every device assigned to this MDM server (``POST /server/devices``)."""
        body: dict = {"limit": min(limit, MAX_LIMIT)}
        if cursor:
            body["cursor"] = cursor
        return self._page(self.request("POST", "/server/devices", body=body))

    def sync_devices(self, cursor: str, limit: int = MAX_LIMIT) -> DevicePage:
        """Changes since ``cursor`` (``POST /devices/sync``): devices with ``op_type`` added/modified/deleted."""
        return self._page(self.request("POST", "/devices/sync", body={"cursor": cursor, "limit": min(limit, MAX_LIMIT)}))

    def pages(self, kind: str, cursor: str | None, limit: int = MAX_LIMIT) -> Iterator[DevicePage]:
        """Fetch or sync pages until ``more_to_follow`` is false; the caller stores each cursor."""
        while True:
            page = self.fetch_devices(cursor, limit) if kind == "fetch" else self.sync_devices(cursor or "", limit)
            yield page
            if not page.more_to_follow:
                return
            if not page.cursor or page.cursor == cursor:
                raise ADERequestError(f"{kind}: more_to_follow without a new cursor")
            cursor = page.cursor

    def device_details(self, serials: list[str]) -> dict:
        return self.request("POST", "/devices", body={"devices": list(serials)}).get("devices", {})

    def define_profile(self, profile: dict) -> str:
        doc = self.request("POST", "/profile", body=profile)
        uuid = doc.get("profile_uuid")
        if not isinstance(uuid, str) or not uuid:
            raise ADERequestError("POST /profile answered without profile_uuid")
        return uuid

    def get_profile(self, profile_uuid: str) -> dict:
        return self.request("GET", "/profile", params={"profile_uuid": profile_uuid})

    def assign_profile(self, profile_uuid: str, serials: list[str]) -> dict[str, str]:
        """``PUT /profile/devices`` in chunks; {serial: SUCCESS | NOT_ACCESSIBLE | FAILED}."""
        out: dict[str, str] = {}
        for k in range(0, len(serials), MAX_LIMIT):
            doc = self.request("PUT", "/profile/devices",
                               body={"profile_uuid": profile_uuid, "devices": serials[k:k + MAX_LIMIT]})
            out.update({str(s): str(v) for s, v in (doc.get("devices") or {}).items()})
        return out

    def remove_profile(self, serials: list[str]) -> dict[str, str]:
        """``DELETE /profile/devices``: devices go back to no profile."""
        out: dict[str, str] = {}
        for k in range(0, len(serials), MAX_LIMIT):
            doc = self.request("DELETE", "/profile/devices", body={"devices": serials[k:k + MAX_LIMIT]})
            out.update({str(s): str(v) for s, v in (doc.get("devices") or {}).items()})
        return out
