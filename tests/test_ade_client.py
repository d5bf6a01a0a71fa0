"""The ADE client (mdm/ade): server token decryption, OAuth 1.0a signing, the API with respx."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess

import httpx
import pytest
import respx

from mdm.ade import oauth
from mdm.ade.client import ADEClient
from mdm.ade.errors import ADEAuthError, ADECursorError, ADERequestError, ADEUnavailable
from mdm.ade.token import ServerToken, decrypt_server_token, seal_server_token
from mdm.errors import ParseError
from mdm.pki import create_ca, issue_identity

BASE = "https://mdmenrollment.apple.com"
TOKEN = ServerToken("CK_abc", "CS_s3cr3t", "AT_def", "AS_s3cr3t", dt.datetime(2030, 5, 1, tzinfo=dt.timezone.utc))


@pytest.fixture(scope="module")
def ident():
    return issue_identity(create_ca("ASM test CA", "Test"), "schoolmdm ADE")


# -- server token ---------------------------------------------------------------------------------
@pytest.mark.parametrize("cipher", ["aes256", "aes128", "3des"])
def test_sealed_token_decrypts(ident, cipher):
    p7m = seal_server_token(TOKEN, ident.cert, cipher=cipher)
    assert p7m.startswith(b"Content-Type: application/pkcs7-mime")
    assert decrypt_server_token(p7m, ident.key, ident.cert) == TOKEN


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
@pytest.mark.parametrize("cipher", ["-aes256", "-aes128", "-des3"])
@pytest.mark.parametrize("form", [[], ["-outform", "DER"], ["-outform", "PEM"], ["-stream"]])
def test_openssl_smime_token_decrypts(ident, tmp_path, cipher, form):
    (tmp_path / "c.pem").write_bytes(ident.cert_pem())
    (tmp_path / "m.txt").write_bytes(
        b"Content-Type: text/plain;charset=UTF-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n-----BEGIN MESSAGE-----\n"
        + json.dumps(TOKEN.as_json()).encode() + b"\n-----END MESSAGE-----\n")
    out = subprocess.run(["openssl", "smime", "-encrypt", cipher, *form, "-in", str(tmp_path / "m.txt"),
                          str(tmp_path / "c.pem")], capture_output=True, check=True).stdout
    assert decrypt_server_token(out, ident.key, ident.cert) == TOKEN


def test_a_der_token_ending_in_a_whitespace_byte_is_read_whole(ident):
    # ciphertext ends in \n, \r, \t, \v, \f or a space once in ~43 tokens: nothing may strip it
    from mdm.scep import envelope

    inner = (b"Content-Type: text/plain\r\n\r\n-----BEGIN MESSAGE-----\n" + json.dumps(TOKEN.as_json()).encode()
             + b"\n-----END MESSAGE-----\n")
    for _ in range(3000):
        der = envelope.encrypt(inner, ident.cert, "aes128")
        if der[-1:].isspace():
            break
    else:
        pytest.fail("no ciphertext ended in a whitespace byte")
    assert decrypt_server_token(der, ident.key, ident.cert) == TOKEN


def test_token_for_another_server_is_refused(ident):
    other = issue_identity(create_ca("Other", "Other"), "other")
    with pytest.raises(ParseError, match="cannot decrypt"):
        decrypt_server_token(seal_server_token(TOKEN, other.cert), ident.key, ident.cert)


@pytest.mark.parametrize("body, message", [
    (b"", "empty"),
    (b"Content-Type: text/plain\n\nhello", "content type"),
    (b"not base64 at all!!", "base64"),
])
def test_malformed_token_files(ident, body, message):
    with pytest.raises(ParseError, match=message):
        decrypt_server_token(body, ident.key, ident.cert)


def test_token_message_must_carry_every_credential(ident):
    from mdm.scep import envelope

    der = envelope.encrypt(b'-----BEGIN MESSAGE-----\n{"consumer_key": "x"}\n-----END MESSAGE-----', ident.cert)
    with pytest.raises(ParseError, match="consumer_secret"):
        decrypt_server_token(der, ident.key, ident.cert)


def test_token_repr_hides_secrets():
    assert "s3cr3t" not in repr(TOKEN) and "s3cr3t" not in str(TOKEN)


# -- OAuth 1.0a -------------------------------------------------------------------------------------
def test_oauth_signature_matches_the_specification_example():
    # OAuth Core 1.0, appendix A.5: the photos.example.net request
    url = "http://photos.example.net/photos?file=vacation.jpg&size=original"
    params = {"oauth_consumer_key": "dpf43f3p2l4k3l03", "oauth_token": "nnch734d00sl2jdk",
              "oauth_signature_method": "HMAC-SHA1", "oauth_timestamp": "1191242096",
              "oauth_nonce": "kllo9940pd9333jh", "oauth_version": "1.0"}
    base = oauth.base_string("GET", url, params)
    assert base.startswith("GET&http%3A%2F%2Fphotos.example.net%2Fphotos&file%3Dvacation.jpg")
    assert oauth.signature(base, "kd94hf93k423kf44", "pfkkdhi9sl3r4s00") == "tR3+Ty81lMeYAr/Fid0kMTYa/WM="


def test_oauth_header_round_trip_and_tampering():
    url = "https://mdmenrollment.apple.com:443/session"
    header = oauth.authorization_header("GET", url, consumer_key="CK ä/+", consumer_secret="c&s",
                                        token="AT", token_secret="a s")
    assert header.startswith('OAuth realm="ADM", ')
    params = oauth.parse_authorization(header)
    assert params["oauth_consumer_key"] == "CK ä/+" and params["oauth_signature_method"] == "HMAC-SHA1"
    assert oauth.verify("GET", "https://MDMENROLLMENT.apple.com/session", params, "c&s", "a s")
    assert not oauth.verify("GET", url, params, "c&s", "wrong")
    assert not oauth.verify("GET", url, {**params, "oauth_token": "other"}, "c&s", "a s")
    with pytest.raises(ParseError):
        oauth.parse_authorization("Bearer x")


# -- the API ----------------------------------------------------------------------------------------
class Sleeps(list):
    def __call__(self, s: float) -> None:
        self.append(s)


@pytest.fixture
def sleeps():
    return Sleeps()


@pytest.fixture
def client(sleeps):
    with ADEClient(TOKEN, BASE, sleep=sleeps, max_retries=3) as c:
        yield c


def session_route(mock, token="S1"):
    return mock.get(f"{BASE}/session").mock(return_value=httpx.Response(200, json={"auth_session_token": token}))


@respx.mock
def test_session_is_signed_and_sent_with_every_call(client):
    s = session_route(respx)
    acct = respx.get(f"{BASE}/account").mock(return_value=httpx.Response(200, json={"server_name": "mdm"}))
    assert client.account() == {"server_name": "mdm"}
    auth = oauth.parse_authorization(s.calls[0].request.headers["authorization"])
    assert auth["oauth_consumer_key"] == "CK_abc" and auth["oauth_token"] == "AT_def"
    assert oauth.verify("GET", f"{BASE}/session", auth, "CS_s3cr3t", "AS_s3cr3t")
    h = acct.calls[0].request.headers
    assert h["x-adm-auth-session"] == "S1" and h["x-server-protocol-version"] == "3"
    client.account()
    assert s.call_count == 1  # the session is reused


@respx.mock
def test_expired_session_is_renewed_once(client):
    s = respx.get(f"{BASE}/session").mock(side_effect=[httpx.Response(200, json={"auth_session_token": "S1"}),
                                                       httpx.Response(200, json={"auth_session_token": "S2"})])
    acct = respx.get(f"{BASE}/account").mock(side_effect=[
        httpx.Response(200, json={}), httpx.Response(401, text="UNAUTHORIZED"), httpx.Response(200, json={"ok": 1})])
    client.account()
    assert client.account() == {"ok": 1}
    assert s.call_count == 2 and acct.calls[2].request.headers["x-adm-auth-session"] == "S2"


@respx.mock
def test_refused_even_with_a_new_session(client):
    session_route(respx)
    respx.get(f"{BASE}/account").mock(return_value=httpx.Response(403, text="FORBIDDEN"))
    with pytest.raises(ADEAuthError):
        client.account()


@respx.mock
def test_terms_not_signed_and_rejected_token(client):
    session_route(respx)
    respx.get(f"{BASE}/account").mock(return_value=httpx.Response(403, text="T_C_NOT_SIGNED"))
    with pytest.raises(ADEAuthError, match="terms"):
        client.account()
    respx.get(f"{BASE}/session").mock(return_value=httpx.Response(403, text="oauth_problem_advice=token_rejected"))
    client.session = None
    with pytest.raises(ADEAuthError, match="new one"):
        client.account()


@respx.mock
def test_session_header_in_a_response_replaces_the_session(client):
    session_route(respx)
    acct = respx.get(f"{BASE}/account").mock(return_value=httpx.Response(200, json={},
                                                                         headers={"X-ADM-Auth-Session": "S9"}))
    client.account()
    client.account()
    assert acct.calls[1].request.headers["x-adm-auth-session"] == "S9"


@respx.mock
def test_rate_limit_and_outages_are_retried_with_retry_after_and_backoff(client, sleeps):
    session_route(respx)
    route = respx.post(f"{BASE}/server/devices").mock(side_effect=[
        httpx.Response(429, text="TOO_MANY_REQUESTS", headers={"Retry-After": "7"}),
        httpx.Response(503, text="SERVICE_UNAVAILABLE", headers={"Retry-After": "2"}),
        httpx.Response(500, text="oops"),
        httpx.Response(200, json={"devices": [{"serial_number": "A1"}], "cursor": "C1", "more_to_follow": False})])
    page = client.fetch_devices("C0", limit=5)
    assert page.cursor == "C1" and [d["serial_number"] for d in page.devices] == ["A1"]
    assert sleeps[:2] == [7.0, 2.0] and 0 < sleeps[2] <= 4.0
    assert all(json.loads(c.request.content) == {"limit": 5, "cursor": "C0"} for c in route.calls)


@respx.mock
def test_still_failing_raises_unavailable(client, sleeps):
    session_route(respx)
    respx.post(f"{BASE}/devices/sync").mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(ADEUnavailable) as e:
        client.sync_devices("C5")
    assert e.value.status_code == 503 and len(sleeps) == 3


@respx.mock
@pytest.mark.parametrize("code", ["EXPIRED_CURSOR", "INVALID_CURSOR", "EXHAUSTED_CURSOR", "CURSOR_REQUIRED"])
def test_cursor_errors(client, code):
    session_route(respx)
    respx.post(f"{BASE}/devices/sync").mock(return_value=httpx.Response(400, text=code))
    with pytest.raises(ADECursorError) as e:
        client.sync_devices("C")
    assert e.value.reason == code


@respx.mock
def test_pages_follow_the_cursor(client):
    session_route(respx)
    bodies = []

    def answer(request):
        body = json.loads(request.content)
        bodies.append(body)
        n = len(bodies)
        return httpx.Response(200, json={"devices": [{"serial_number": f"S{n}"}], "cursor": f"C{n}",
                                         "more_to_follow": n < 3})

    respx.post(f"{BASE}/server/devices").mock(side_effect=answer)
    pages = list(client.pages("fetch", None, limit=1))
    assert [p.cursor for p in pages] == ["C1", "C2", "C3"]
    assert bodies == [{"limit": 1}, {"limit": 1, "cursor": "C1"}, {"limit": 1, "cursor": "C2"}]


@respx.mock
def test_define_and_assign_profiles(client):
    session_route(respx)
    respx.post(f"{BASE}/profile").mock(return_value=httpx.Response(200, json={"profile_uuid": "P1", "devices": {}}))
    seen = []

    def assign(request):
        body = json.loads(request.content)
        seen.append(len(body["devices"]))
        return httpx.Response(200, json={"profile_uuid": body["profile_uuid"],
                                         "devices": {s: "SUCCESS" for s in body["devices"]}})

    respx.put(f"{BASE}/profile/devices").mock(side_effect=assign)
    assert client.define_profile({"profile_name": "x", "url": "https://mdm/enroll/ade/s"}) == "P1"
    res = client.assign_profile("P1", [f"S{i}" for i in range(2500)])
    assert seen == [1000, 1000, 500] and len(res) == 2500 and set(res.values()) == {"SUCCESS"}


@respx.mock
def test_other_client_errors(client):
    session_route(respx)
    respx.post(f"{BASE}/profile").mock(return_value=httpx.Response(400, json={"code": "MALFORMED_URL"}))
    with pytest.raises(ADERequestError) as e:
        client.define_profile({})
    assert e.value.reason == "MALFORMED_URL"
