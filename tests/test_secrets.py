"""Secrets stay secret: not in any log record, not in any API answer, not stored in the clear.

One full flow with every log record of every logger captured at DEBUG: schools and their
enrollment tokens, the example city's blueprints (Wi-Fi passwords), API tokens and a
webhook made through the API, iPads enrolled through SCEP, the Wi-Fi profile pushed through
the API and installed, a replayed SCEP challenge, wrong tokens, a webhook delivery. Then
everything read back through the API by admin, technician and support tokens.

A secret the API hands out once (a new API token, a webhook's secret, a school's
enrollment URL) may appear in that one answer and nowhere else. Tokens, enrollment tokens
and challenges are stored as hashes only; private key files are 0600 in a 0700 directory.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select

from app.db.models import Base
from app.services.webhook_worker import WebhookWorker
from mdm.enrollment import find_payload
from mdm.errors import ParseError
from mdm.pki import load_private_key
from mdm.scep import ScepRefused
from tests.conftest import ADMIN_TOKEN
from tests.support.device import TestDevice

ROOT = Path(__file__).resolve().parents[1]
CITY = ROOT / "examples" / "city"
PEM_KEY = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----")


def wifi_passwords() -> list[str]:
    found = re.findall(r'^\s*password:\s*"?([^"\n]+)"?\s*$', "".join(p.read_text() for p in CITY.rglob("*.yaml")),
                       re.MULTILINE)
    assert len(found) >= 3, found
    return found


@contextlib.contextmanager
def every_log_record():
    """Every record of every logger at DEBUG: the root and each logger set to DEBUG, a handler on
    the root and on loggers that do not propagate. (SQLAlchemy's own namespace keeps its
    default: turning it to INFO/DEBUG is its SQL echo, checked on its own below.)"""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(logging.DEBUG)
    loggers = [logging.getLogger()] + [
        lg for name, lg in logging.root.manager.loggerDict.items()
        if isinstance(lg, logging.Logger) and not name.startswith("sqlalchemy")]
    saved = [(lg, lg.level, lg.disabled) for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
        lg.disabled = False
        if lg is logging.getLogger() or not lg.propagate:
            lg.addHandler(handler)
    try:
        yield records
    finally:
        for lg, level, disabled in saved:
            lg.setLevel(level)
            lg.disabled = disabled
            if handler in lg.handlers:
                lg.removeHandler(handler)


def record_text(record: logging.LogRecord) -> str:
    parts = [record.name, record.getMessage()]
    if record.exc_info:
        parts.append(logging.Formatter().formatException(record.exc_info))
    if record.stack_info:
        parts.append(record.stack_info)
    return "\n".join(parts)


@dataclass
class Seen:
    method: str
    url: str
    status: int
    body: bytes


class Recorder:
    """Every response the test client receives."""

    def __init__(self, client) -> None:
        self.responses: list[Seen] = []
        client.event_hooks["response"].append(self._keep)

    def _keep(self, response: httpx.Response) -> None:
        response.read()
        req = response.request
        self.responses.append(Seen(req.method, str(req.url), response.status_code, response.content))

    def last(self) -> int:
        return len(self.responses) - 1


def key_files(data_dir: Path) -> list[Path]:
    return [p for p in data_dir.rglob("*") if p.is_file() and (p.suffix in (".key", ".p12")
                                                               or PEM_KEY.search(p.read_bytes()[:4096]))]


def key_der_forms(path: Path) -> list[bytes]:
    """A private key's DER (PKCS#8 and traditional), or a symmetric key's bytes, as raw bytes,
    base64 and hex: what a leak would look like."""
    data = path.read_bytes()
    try:
        key = load_private_key(data)
    except ParseError:  # a symmetric key (the dashboard's CSRF key): the bytes are the secret
        return [data, base64.b64encode(data), base64.urlsafe_b64encode(data).rstrip(b"="), data.hex().encode()]
    out = []
    for fmt in (serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL):
        der = key.private_bytes(serialization.Encoding.DER, fmt, serialization.NoEncryption())
        out += [der[16:80], base64.b64encode(der)[20:84], der.hex()[32:160].encode()]
    return out


def test_no_secret_leaks_anywhere(client, container, data_dir, tmp_path):
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    rec = Recorder(client)
    secrets: dict[str, tuple[str, int | None]] = {}  # what -> (value, index of the one answer that may show it)
    with every_log_record() as records:
        # schools through the API: the enrollment token is shown once; a rotation shows a new one once
        r = client.post("/api/v1/schools", headers=admin, json={"id": "gs-lindenhof", "name": "GS Lindenhof"})
        assert r.status_code == 201, r.text
        secrets["first enrollment token"] = (r.json()["enroll_token"], rec.last())
        r = client.post("/api/v1/schools/gs-lindenhof/enroll-url", headers=admin)
        enroll_token = r.json()["enroll_url"].split("token=", 1)[1]
        secrets["enrollment token"] = (enroll_token, rec.last())

        # the example city: Wi-Fi passwords in the blueprints and their profiles
        city = tmp_path / "city"
        shutil.copytree(CITY, city)
        container.blueprints.import_dir(city, actor="admin")
        for i, pw in enumerate(wifi_passwords()):
            secrets[f"Wi-Fi password {i}"] = (pw, None)

        # API tokens and a webhook through the API
        made = {}
        for role, schools in (("technician", None), ("support", ["gs-lindenhof"])):
            r = client.post("/api/v1/tokens", headers=admin, json={"name": f"desk-{role}", "role": role,
                                                                   "schools": schools})
            assert r.status_code == 201, r.text
            made[role] = r.json()["token"]
            secrets[f"{role} API token"] = (made[role], rec.last())
        secrets["admin API token"] = (ADMIN_TOKEN, None)
        r = client.post("/api/v1/webhooks", headers=admin, json={
            "name": "sis", "url": "https://127.0.0.1:9/hooks/schoolmdm", "events": ["*"]})
        assert r.status_code == 201, r.text
        secrets["webhook secret"] = (r.json()["secret"], rec.last())

        # iPads enroll through SCEP; each gets a one-time challenge in its profile
        devices = [TestDevice(client).enroll("gs-lindenhof", enroll_token) for _ in range(3)]
        for i, d in enumerate(devices):
            secrets[f"SCEP challenge {i}"] = (
                find_payload(d.profile, "com.apple.security.scep")["PayloadContent"]["Challenge"], None)
        # refusals are logged: a replayed challenge, a wrong enrollment token, a wrong API token
        replay = TestDevice(client, key=devices[0].key)
        replay.fetch_profile("gs-lindenhof", enroll_token)
        with pytest.raises(ScepRefused):  # the CertRep is a FAILURE: no certificate
            replay.scep(challenge=secrets["SCEP challenge 0"][0])
        assert client.get("/enroll/gs-lindenhof", params={"token": "guess-" + enroll_token[:6]}).status_code == 403
        assert client.get("/api/v1/devices", headers={"Authorization": "Bearer " + made["support"][:-2]}
                          ).status_code == 401

        # the Wi-Fi profile pushed through the API, installed by every iPad
        wifi = next(p for p in client.get("/api/v1/schools/gs-lindenhof/profiles", headers=admin).json()["items"]
                    if p["name"] == "wifi" and p["role"] == "pupil")
        r = client.post(f"/api/v1/profiles/{wifi['id']}/push", headers=admin, json={})
        assert r.status_code == 202 and r.json()["queued"] == 3, r.text
        job = r.json()["job"]["id"]
        for d in devices:
            resp = d.connect("Idle")
            while resp.content:
                cu, cmd = d.command_of(resp)
                resp = d.connect("Acknowledged", cu)
        assert client.get(f"/api/v1/jobs/{job}", headers=admin).json()["state"] == "finished"
        r = client.post("/api/v1/schools/gs-lindenhof/blueprint/push", headers=admin, json={"role": "pupil"})
        assert r.status_code == 202, r.text

        # one webhook delivery round, the receiver failing: the failure is logged
        delivered = []

        def receiver(request: httpx.Request) -> httpx.Response:
            delivered.append(request)
            return httpx.Response(500)

        async def deliver():
            async with httpx.AsyncClient(transport=httpx.MockTransport(receiver)) as http:
                return await WebhookWorker(container.webhooks, http=http).run_once()

        assert asyncio.run(deliver()) >= 1 and delivered
        assert all(secrets["webhook secret"][0] not in str(dict(r.headers)) + r.content.decode() for r in delivered)

        # everything read back, by each role
        for token in (ADMIN_TOKEN, made["technician"], made["support"]):
            h = {"Authorization": f"Bearer {token}"}
            for url in ["/api/v1/devices", *(f"/api/v1/devices/{d.udid}" for d in devices),
                        f"/api/v1/devices/{devices[0].serial}", "/api/v1/schools",
                        "/api/v1/schools/gs-lindenhof/profiles",
                        "/api/v1/schools/gs-lindenhof/blueprint", "/api/v1/schools/gs-lindenhof/blueprint/diff",
                        "/api/v1/schools/gs-lindenhof/blueprint/plan", "/api/v1/jobs", f"/api/v1/jobs/{job}",
                        f"/api/v1/jobs/{job}/devices", "/api/v1/tokens", "/api/v1/webhooks",
                        "/api/v1/webhooks/deliveries", "/api/v1/audit?limit=1000", "/api/v1/rollout", "/api/v1/waves"]:
                assert client.get(url, headers=h).status_code in (200, 403), url

    texts = [record_text(r) for r in records]
    assert any("SCEP challenge refused" in t for t in texts)  # the refusals were logged, and are scanned
    assert any("webhook delivery" in t for t in texts)
    # the test client's own request log (httpx) shows the enrollment URL it fetched: not the server's
    texts = [t for t in texts if not (t.startswith("httpx\nHTTP Request:") and "://testserver/" in t)]
    api = [s for s in rec.responses if "/api/v1/" in s.url]
    assert len(api) > 60

    for what, (value, origin) in secrets.items():
        needle = value.encode()
        leaks = [f"log: {t[:200]}" for t in texts if value in t]
        leaks += [f"{s.method} {s.url} -> {s.status}" for i, s in enumerate(rec.responses)
                  if i != origin and "/api/v1/" in s.url and needle in s.body]
        assert not leaks, f"{what} leaked:\n" + "\n".join(leaks)

    # profiles that carry a Wi-Fi password travel to the iPads encrypted to each device's identity
    served = [s.body for s in rec.responses if s.url.endswith("/mdm/connect") and s.body]
    assert served and not any(pw.encode() in b for pw in wifi_passwords() for b in served)

    # private keys: never in the clear, in no log and no API answer
    keys = key_files(data_dir)
    assert {p.name for p in keys} >= {"ca.key", "signing.key", "tls.key", "push.key"}
    forms = [f for p in keys for f in key_der_forms(p)]
    assert not [t[:200] for t in texts if PEM_KEY.search(t.encode())]
    assert not [s.url for s in api if PEM_KEY.search(s.body) or any(f in s.body for f in forms)]
    assert not [t[:200] for t in texts if any(f in t.encode() for f in forms)]

    # only hashes are stored of what is only ever compared
    stored = dump_database(container.engine)
    for what in ("technician API token", "support API token", "admin API token", "enrollment token",
                 "first enrollment token", "SCEP challenge 0", "SCEP challenge 1", "SCEP challenge 2"):
        value = secrets[what][0]
        assert not [t for t, text in stored.items() if value in text], f"{what} is stored in the clear"
    assert "smdm_" not in stored["api_tokens"] and secrets["technician API token"][0] not in stored["api_tokens"]


def dump_database(engine) -> dict[str, str]:
    """Every table as one text (bytes decoded leniently, so plaintext inside blobs shows)."""
    out = {}
    with engine.connect() as c:
        for t in Base.metadata.sorted_tables:
            rows = c.execute(select(t)).all()
            out[t.name] = "\n".join(" ".join(v.decode("latin-1") if isinstance(v, bytes) else str(v) for v in r)
                                    for r in rows)
    return out


def test_private_key_files_are_private(data_dir):
    keys = key_files(data_dir)
    assert keys
    for p in keys:
        assert p.stat().st_mode & 0o777 == 0o600, f"{p} is {oct(p.stat().st_mode & 0o777)}"
    pki = data_dir / "pki"
    assert pki.stat().st_mode & 0o777 == 0o700, oct(pki.stat().st_mode & 0o777)


def test_sql_echo_shows_no_parameters(client, container, caplog):
    """With SQLAlchemy's SQL echo on (its logger at INFO), statements are logged without their
    parameters: a webhook's secret, a push token, a profile's payload never reach the log."""
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")
    r = client.post("/api/v1/webhooks", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                    json={"name": "echo", "url": "https://127.0.0.1:9/", "events": ["*"]})
    assert r.status_code == 201, r.text
    secret = r.json()["secret"]
    sql = [rec.getMessage() for rec in caplog.records if rec.name.startswith("sqlalchemy.engine")]
    assert any("INSERT INTO webhooks" in m for m in sql), sql[:5]
    assert not [m for m in sql if secret in m]
