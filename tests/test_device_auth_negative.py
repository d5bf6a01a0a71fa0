"""Refusals on the device endpoints: each a 4xx with no state change."""

from __future__ import annotations

import pytest

from mdm import pki
from mdm.checkin import build_checkin
from mdm.commands import build_report
from mdm.signature import sign_detached
from tests.support.device import CHECKIN_TYPE, CONNECT_TYPE, TestDevice
from tests.support.fixtures import fixture, snapshot


@pytest.fixture
def before(container, enrolled):
    return snapshot(container.engine)


def put(dev, path, body, headers):
    return dev.http.put(path, content=body, headers=headers)


def assert_refused(r, container, before, statuses=(401, 403)):
    assert r.status_code in statuses, (r.status_code, r.text)
    assert r.json()["error"]["message"]
    assert snapshot(container.engine) == before


def test_no_signature(enrolled, container, before):
    body = build_report(enrolled.udid, "Idle")
    assert_refused(put(enrolled, "/mdm/connect", body, {"Content-Type": CONNECT_TYPE}), container, before, (401,))
    body = enrolled.token_update_body()
    assert_refused(put(enrolled, "/mdm/checkin", body, {"Content-Type": CHECKIN_TYPE}), container, before, (401,))


def test_tampered_body(enrolled, container, before):
    body = enrolled.token_update_body()
    h = enrolled.headers(body, CHECKIN_TYPE)
    tampered = body.replace(enrolled.push_magic.encode(), b"EVIL-" + enrolled.push_magic[5:].encode())
    assert_refused(put(enrolled, "/mdm/checkin", tampered, h), container, before, (401,))


def test_certificate_not_from_our_ca(enrolled, container, before):
    other_ca = pki.create_ca("Evil CA", "Evil")
    rogue = pki.issue_identity(other_ca, enrolled.serial)
    body = build_report(enrolled.udid, "Idle")
    h = {"Mdm-Signature": sign_detached(body, rogue.cert, rogue.key), "Content-Type": CONNECT_TYPE}
    assert_refused(put(enrolled, "/mdm/connect", body, h), container, before, (401,))


def test_self_signed_certificate_cannot_authenticate(device, school, container):
    device.fetch_profile(school["id"], school["token"])
    before = snapshot(container.engine)
    me = pki.create_ca(device.serial, "me")
    body = device.authenticate_body()
    h = {"Mdm-Signature": sign_detached(body, me.cert, me.key), "Content-Type": CHECKIN_TYPE}
    assert_refused(put(device, "/mdm/checkin", body, h), container, before, (401,))


def test_our_ca_but_not_issued_by_scep_cannot_authenticate(device, school, container):
    """A certificate signed by our CA for another purpose (not a SCEP device identity)."""
    device.fetch_profile(school["id"], school["token"])
    before = snapshot(container.engine)
    ident = pki.issue_identity(container.pki.ca, "not-a-device")
    body = device.authenticate_body()
    h = {"Mdm-Signature": sign_detached(body, ident.cert, ident.key), "Content-Type": CHECKIN_TYPE}
    assert_refused(put(device, "/mdm/checkin", body, h), container, before, (401,))


def test_another_devices_certificate(client, school, container):
    a = TestDevice(client).enroll(school["id"], school["token"])
    b = TestDevice(client).enroll(school["id"], school["token"])
    before = snapshot(container.engine)
    body = build_report(b.udid, "Idle")
    h = {"Mdm-Signature": sign_detached(body, a.cert, a.key), "Content-Type": CONNECT_TYPE}
    assert_refused(put(b, "/mdm/connect", body, h), container, before, (403,))
    # nor may A's certificate re-Authenticate as B (certificate reuse across devices)
    body = b.authenticate_body()
    h = {"Mdm-Signature": sign_detached(body, a.cert, a.key), "Content-Type": CHECKIN_TYPE}
    assert_refused(put(b, "/mdm/checkin", body, h), container, before, (403,))


def test_expired_certificate(enrolled, container, before, monkeypatch):
    import datetime as dt

    future = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=3650)
    monkeypatch.setattr(container.verifier, "_clock", lambda: future)
    r = enrolled.connect("Idle")
    assert_refused(r, container, before, (401,))


@pytest.mark.parametrize("body", [
    b"<plist><dict><key>UDID</key>",  # truncated
    b"not a plist at all",
    b"<?xml version='1.0'?><plist version='1.0'><array><string>x</string></array></plist>",
    b"",
])
def test_malformed_plist(enrolled, container, before, body):
    h = enrolled.headers(body, CHECKIN_TYPE) if body else {"Content-Type": CHECKIN_TYPE}
    r = put(enrolled, "/mdm/checkin", body, h)
    assert r.status_code in (400, 401), r.text
    assert snapshot(container.engine) == before


@pytest.mark.parametrize("name", ["EntityExpansion", "ExternalEntity"])
def test_entity_plists_are_refused(enrolled, container, before, name):
    body = fixture("checkin", name, udid=enrolled.udid)
    r = put(enrolled, "/mdm/checkin", body, enrolled.headers(body, CHECKIN_TYPE))
    assert r.status_code == 400 and "refused" in r.json()["error"]["message"]
    assert snapshot(container.engine) == before


def test_oversized_body(enrolled, container, before):
    limit = container.settings.max_checkin_bytes
    body = build_checkin("Authenticate", enrolled.udid, DeviceName="x" * (limit + 10))
    r = put(enrolled, "/mdm/checkin", body, {"Content-Type": CHECKIN_TYPE, "Mdm-Signature": "AAAA"})
    assert r.status_code == 413
    assert snapshot(container.engine) == before


def test_deeply_nested_plist(enrolled, container, before):
    inner = "<array>" * 100 + "</array>" * 100
    body = (f"<?xml version='1.0'?><plist version='1.0'><dict><key>UDID</key><string>{enrolled.udid}</string>"
            f"<key>Status</key><string>Idle</string><key>Deep</key>{inner}</dict></plist>").encode()
    r = put(enrolled, "/mdm/connect", body, enrolled.headers(body, CONNECT_TYPE))
    assert r.status_code == 413
    assert snapshot(container.engine) == before


def test_unknown_message_type(enrolled, container, before):
    body = build_checkin("FancyNewThing", enrolled.udid, Topic=enrolled.topic)
    r = put(enrolled, "/mdm/checkin", body, enrolled.headers(body, CHECKIN_TYPE))
    assert r.status_code == 400 and r.json()["error"]["code"] == "unknown_message_type"
    assert snapshot(container.engine) == before


def test_unknown_report_status(enrolled, container, before):
    body = build_report(enrolled.udid, "Sleeping")
    r = put(enrolled, "/mdm/connect", body, enrolled.headers(body, CONNECT_TYPE))
    assert r.status_code == 400
    assert snapshot(container.engine) == before


def test_sha1_signatures_are_accepted(client, school, container):
    dev = TestDevice(client, digest="sha1").enroll(school["id"], school["token"])
    assert dev.connect("Idle").status_code == 200


def test_proxy_client_certificate_header_only_when_configured(client, school, container, settings):
    from urllib.parse import quote

    from cryptography.hazmat.primitives.serialization import Encoding

    dev = TestDevice(client).enroll(school["id"], school["token"])
    pem = quote(dev.cert.public_bytes(Encoding.PEM).decode())
    body = build_report(dev.udid, "Idle")
    h = {"X-SSL-Client-Cert": pem, "Content-Type": CONNECT_TYPE}
    # off by default: the header is ignored and an unsigned body is refused
    assert dev.http.put("/mdm/connect", content=body, headers=h).status_code == 401
    from app.main import create_app
    from fastapi.testclient import TestClient

    s2 = settings.model_copy(update={"client_cert_header": "X-SSL-Client-Cert"})
    from app.container import Container

    c2 = Container(s2)
    with TestClient(create_app(s2, container=c2, background=False)) as proxied:
        assert proxied.put("/mdm/connect", content=body, headers=h).status_code == 200
        rogue = pki.issue_identity(pki.create_ca("Evil", "Evil"), dev.serial)
        bad = {"X-SSL-Client-Cert": quote(rogue.cert.public_bytes(Encoding.PEM).decode()),
               "Content-Type": CONNECT_TYPE}
        assert proxied.put("/mdm/connect", content=body, headers=bad).status_code == 401
    c2.close()


def test_a_proxy_header_certificate_with_an_invalid_version_is_refused():
    from urllib.parse import quote

    from cryptography.hazmat.primitives.serialization import Encoding

    from app.services.certauth import _cert_from_header
    from mdm.errors import CertAuthError
    from tests.support.certs import pem, with_version

    der = pki.issue_identity(pki.create_ca("City", "City"), "SN1").cert.public_bytes(Encoding.DER)
    with pytest.raises(CertAuthError, match="PEM certificate"):
        _cert_from_header(quote(pem(with_version(der, 5))))


@pytest.mark.parametrize("path", ["/mdm/checkin", "/mdm/connect"])
@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_only_put_is_allowed(enrolled, container, before, path, method):
    r = enrolled.http.request(method, path, content=b"")
    assert r.status_code == 405 and r.headers["allow"] == "PUT"
    assert r.json()["error"]["code"] == "method_not_allowed"
    assert snapshot(container.engine) == before


@pytest.mark.parametrize("declared", ["12x", "-"])
def test_invalid_content_length(enrolled, container, before, declared):
    body = build_report(enrolled.udid, "Idle")
    r = put(enrolled, "/mdm/connect", body,
            {**enrolled.headers(body, CONNECT_TYPE), "Content-Length": declared})
    assert r.status_code == 400 and r.json()["error"]["message"] == "invalid Content-Length"
    assert snapshot(container.engine) == before


def test_declared_length_over_the_limit_is_refused_before_reading(enrolled, container, before):
    limit = container.settings.max_connect_bytes
    r = put(enrolled, "/mdm/connect", b"x", {"Content-Type": CONNECT_TYPE, "Content-Length": str(limit + 1)})
    assert r.status_code == 413
    assert snapshot(container.engine) == before


def test_a_client_gone_before_its_body_gets_no_reply_and_changes_nothing(app, enrolled, container, before):
    import asyncio

    sent = []

    async def receive():
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "PUT",
             "scheme": "https", "path": "/mdm/connect", "raw_path": b"/mdm/connect", "query_string": b"",
             "root_path": "", "headers": [(b"content-type", CONNECT_TYPE.encode())],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8443), "state": {}}
    asyncio.run(app(scope, receive, send))
    assert sent == []
    assert snapshot(container.engine) == before
