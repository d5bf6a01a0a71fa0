"""SCEP (RFC 8894) protocol tests: our client <-> our server functions, failure replies,
tampering, OpenSSL interop of the CMS structures, the HTTP routes, and parser fuzzing."""

from __future__ import annotations

import base64
import datetime as dt
import functools
import os
import shutil
import subprocess
from urllib.parse import quote

import pytest
from asn1crypto import cms, core
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.errors import install_error_handlers
from app.routes.scep import make_scep_router
from mdm import pki
from mdm.errors import MDMError, ParseError
from mdm.scep import (
    CA_CAPS, FailInfo, ScepMessageError, ScepRefused, ScepRequest, build_request, cert_rep_failure,
    cert_rep_success, handle_pki_operation, make_csr, parse_cert_rep, parse_pki_message,
    request_sender_nonce, self_signed,
)
from mdm.scep import cms as scep_cms
from mdm.scep import envelope
from mdm.scep.message import IssuerAndSubject

CHALLENGE = "s3cret-challenge"
openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
DER = serialization.Encoding.DER


@functools.cache
def ca() -> pki.Identity:
    return pki.create_ca("SCEP Test CA", "schoolmdm tests")


@functools.cache
def device_key(i: int = 0):
    return pki.new_key()


class FakeService:
    def __init__(self, identity: pki.Identity | None = None, error: Exception | None = None) -> None:
        self.identity = identity or ca()
        self.error = error
        self.seen: list[ScepRequest] = []

    def ca(self) -> pki.Identity:
        return self.identity

    def issue(self, request: ScepRequest) -> x509.Certificate:
        self.seen.append(request)
        if self.error is not None:
            raise self.error
        if request.csr is None:
            raise ScepRefused("nothing to issue", FailInfo.badRequest)
        if request.message_type == "PKCSReq" and request.challenge != CHALLENGE:
            raise ScepRefused("wrong challenge", FailInfo.badRequest)
        return pki.sign_csr(self.identity, request.csr, days=30)


def _openssl(*args: str, cwd) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def pkcs_req(key=None, *, challenge: str | None = CHALLENGE, cipher="aes256", digest="sha256", cn="ipad-1"):
    key = key or device_key()
    signer = self_signed(key, cn)
    msg, tx = build_request(key, make_csr(key, cn, challenge), signer, key, ca().cert,
                            cipher=cipher, digest=digest)
    return msg, tx, signer, key


def enroll(service=None, **kw):
    msg, tx, signer, key = pkcs_req(**kw)
    reply = handle_pki_operation(msg, service or FakeService())
    return parse_cert_rep(reply, transaction_id=tx, recipient_key=key, recipient_cert=signer,
                          ca_cert=ca().cert, sender_nonce=request_sender_nonce(msg)), key


def refusal(msg: bytes, tx: str, signer, key, service=None, **kw) -> ScepRefused:
    reply = handle_pki_operation(msg, service or FakeService(), **kw)
    with pytest.raises(ScepRefused) as e:
        parse_cert_rep(reply, transaction_id=tx, recipient_key=key, recipient_cert=signer, ca_cert=ca().cert,
                       sender_nonce=request_sender_nonce(msg))
    return e.value


def reply_attrs(reply: bytes) -> dict:
    sd = scep_cms.load_signed_data(reply)
    return scep_cms.signed_attributes(sd["signer_infos"][0])


def resign(content: bytes, signer, key, message_type: str, tx: str = "tx-1", digest="sha256") -> bytes:
    attrs = [scep_cms.attr(scep_cms.OID_MESSAGE_TYPE, scep_cms.printable(message_type)),
             scep_cms.attr(scep_cms.OID_TRANSACTION_ID, scep_cms.printable(tx)),
             scep_cms.attr(scep_cms.OID_SENDER_NONCE, core.OctetString(os.urandom(16)))]
    return scep_cms.signed_data(content, signer, key, attrs, digest=digest)


# --- round trips ---------------------------------------------------------------------------

@pytest.mark.parametrize("cipher", ["aes128", "aes256", "3des"])
@pytest.mark.parametrize("digest", ["sha1", "sha256", "sha512"])
def test_pkcsreq_round_trip(cipher, digest):
    msg, tx, signer, key = pkcs_req(cipher=cipher, digest=digest)
    req = parse_pki_message(msg, ca())
    assert (req.message_type, req.transaction_id, req.challenge) == ("PKCSReq", tx, CHALLENGE)
    assert (req.content_encryption, req.digest_algorithm) == (cipher, digest)
    assert req.signer_cert == signer and req.raw == msg and len(req.sender_nonce) == 16
    assert req.csr.public_key() == key.public_key() and req.signing_time is not None

    reply = handle_pki_operation(msg, FakeService())
    cert = parse_cert_rep(reply, transaction_id=tx, recipient_key=key, recipient_cert=signer,
                          ca_cert=ca().cert, sender_nonce=req.sender_nonce)
    cert.verify_directly_issued_by(ca().cert)
    assert cert.public_key() == key.public_key()
    assert ExtendedKeyUsageOID.CLIENT_AUTH in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value

    # the reply mirrors the request's cipher and digest
    sd = scep_cms.load_signed_data(reply)
    assert sd["signer_infos"][0]["digest_algorithm"]["algorithm"].native == digest
    env = cms.ContentInfo.load(sd["encap_content_info"]["content"].native)["content"]
    alg = env["encrypted_content_info"]["content_encryption_algorithm"]["algorithm"].native
    assert alg == envelope.CIPHERS[cipher][0]


def test_cert_rep_attributes():
    msg, tx, signer, key = pkcs_req()
    req = parse_pki_message(msg, ca())
    attrs = reply_attrs(cert_rep_success(req, pki.sign_csr(ca(), req.csr), ca()))
    s = functools.partial(scep_cms.string_attr, attrs)
    b = functools.partial(scep_cms.bytes_attr, attrs)
    assert (s(scep_cms.OID_MESSAGE_TYPE), s(scep_cms.OID_PKI_STATUS), s(scep_cms.OID_TRANSACTION_ID)) == ("3", "0", tx)
    assert b(scep_cms.OID_RECIPIENT_NONCE) == req.sender_nonce
    assert len(b(scep_cms.OID_SENDER_NONCE)) == 16 and b(scep_cms.OID_SENDER_NONCE) != req.sender_nonce
    assert scep_cms.OID_FAIL_INFO not in attrs


def test_single_des_request_is_answered_with_3des():
    msg, tx, signer, key = pkcs_req(cipher="des", digest="sha1")
    assert parse_pki_message(msg, ca()).content_encryption == "des"
    reply = handle_pki_operation(msg, FakeService())
    env = scep_cms.load_signed_data(reply)["encap_content_info"]["content"].native
    assert envelope.decrypt(env, signer, key)[1] == "3des"
    assert parse_cert_rep(reply, transaction_id=tx, recipient_key=key, recipient_cert=signer, ca_cert=ca().cert)


def test_renewal_round_trip():
    old_cert, old_key = enroll()
    new_key = device_key(1)
    msg, tx = build_request(new_key, make_csr(new_key, "ipad-1", None), old_cert, old_key, ca().cert,
                            message_type="RenewalReq")
    req = parse_pki_message(msg, ca())
    assert req.message_type == "RenewalReq" and req.signer_cert == old_cert and req.challenge is None
    reply = handle_pki_operation(msg, FakeService())
    new_cert = parse_cert_rep(reply, transaction_id=tx, recipient_key=old_key, recipient_cert=old_cert,
                              ca_cert=ca().cert)
    assert new_cert.public_key() == new_key.public_key() and new_cert.serial_number != old_cert.serial_number


def test_renewal_signed_by_foreign_certificate_is_bad_cert_id():
    key = device_key()
    foreign = self_signed(key, "ipad-1")
    msg, tx = build_request(key, make_csr(key, "ipad-1", None), foreign, key, ca().cert, message_type="RenewalReq")
    assert refusal(msg, tx, foreign, key).fail_info == FailInfo.badCertId


def test_renewal_with_expired_certificate_is_bad_time():
    old_cert, old_key = enroll()
    msg, tx = build_request(old_key, make_csr(old_key, "ipad-1", None), old_cert, old_key, ca().cert,
                            message_type="RenewalReq")
    later = old_cert.not_valid_after_utc + dt.timedelta(days=1)
    assert refusal(msg, tx, old_cert, old_key, now=later).fail_info == FailInfo.badTime


def test_signing_time_outside_clock_skew_is_bad_time():
    msg, tx, signer, key = pkcs_req()
    later = pki.utcnow() + dt.timedelta(hours=3)
    assert refusal(msg, tx, signer, key, now=later, max_clock_skew=dt.timedelta(hours=1)).fail_info == FailInfo.badTime
    assert parse_pki_message(msg, ca(), max_clock_skew=dt.timedelta(hours=1))  # within skew now


# --- refusals ------------------------------------------------------------------------------

def test_wrong_challenge_gets_failure_cert_rep():
    msg, tx, signer, key = pkcs_req(challenge="wrong")
    reply = handle_pki_operation(msg, FakeService())
    attrs = reply_attrs(reply)
    assert scep_cms.string_attr(attrs, scep_cms.OID_PKI_STATUS) == "2"
    assert scep_cms.string_attr(attrs, scep_cms.OID_FAIL_INFO) == "2"
    assert scep_cms.string_attr(attrs, scep_cms.OID_FAIL_INFO_TEXT) == "wrong challenge"
    assert scep_cms.load_signed_data(reply)["encap_content_info"]["content"].native is None
    err = refusal(msg, tx, signer, key)
    assert err.fail_info == FailInfo.badRequest and err.message == "wrong challenge"


@pytest.mark.parametrize("fail_info", list(FailInfo))
def test_failure_reply_carries_each_fail_info(fail_info):
    msg, tx, signer, key = pkcs_req()
    reply = cert_rep_failure(parse_pki_message(msg, ca()), fail_info, ca())
    with pytest.raises(ScepRefused) as e:
        parse_cert_rep(reply, transaction_id=tx, recipient_key=key, recipient_cert=signer, ca_cert=ca().cert)
    assert e.value.fail_info == fail_info


def test_service_errors_become_failures():
    msg, tx, signer, key = pkcs_req()
    svc = FakeService(error=ScepRefused("too late", FailInfo.badTime))
    assert refusal(msg, tx, signer, key, svc).fail_info == FailInfo.badTime
    svc = FakeService(error=ParseError("weak key"))
    assert refusal(msg, tx, signer, key, svc).fail_info == FailInfo.badRequest


def test_get_cert_initial_is_parsed_and_refusable():
    key = device_key()
    signer = self_signed(key, "ipad-1")
    name = ca().cert.subject.public_bytes()
    ias = IssuerAndSubject({"issuer": cms.Name.load(name), "subject": cms.Name.load(name)}).dump()
    msg = resign(envelope.encrypt(ias, ca().cert), signer, key, "20")
    req = parse_pki_message(msg, ca())
    assert req.message_type == "GetCertInitial" and req.csr is None
    assert refusal(msg, "tx-1", signer, key).fail_info == FailInfo.badRequest


@pytest.mark.parametrize("message_type", ["3", "21", "22", "99"])
def test_unsupported_message_types_are_bad_request(message_type):
    key = device_key()
    signer = self_signed(key, "ipad-1")
    csr = make_csr(key, "ipad-1", CHALLENGE).public_bytes(DER)
    msg = resign(envelope.encrypt(csr, ca().cert), signer, key, message_type)
    assert refusal(msg, "tx-1", signer, key).fail_info == FailInfo.badRequest


def test_envelope_for_another_ca_is_bad_cert_id():
    key = device_key()
    signer = self_signed(key, "ipad-1")
    other = pki.create_ca("Other CA", "elsewhere")
    csr = make_csr(key, "ipad-1", CHALLENGE).public_bytes(DER)
    msg = resign(envelope.encrypt(csr, other.cert), signer, key, "19")
    assert refusal(msg, "tx-1", signer, key).fail_info == FailInfo.badCertId


def test_unsupported_cipher_is_bad_alg():
    key = device_key()
    signer = self_signed(key, "ipad-1")
    info = cms.ContentInfo.load(envelope.encrypt(b"csr", ca().cert))
    info["content"]["encrypted_content_info"]["content_encryption_algorithm"] = {
        "algorithm": "aes128_ofb", "parameters": os.urandom(16)}
    msg = resign(info.dump(), signer, key, "19")
    assert refusal(msg, "tx-1", signer, key).fail_info == FailInfo.badAlg


def test_garbage_inside_a_valid_signature_is_bad_message_check():
    key = device_key()
    signer = self_signed(key, "ipad-1")
    for content in (b"not cms at all", envelope.encrypt(b"not a csr", ca().cert)):
        msg = resign(content, signer, key, "19")
        assert refusal(msg, "tx-1", signer, key).fail_info == FailInfo.badMessageCheck


@pytest.mark.parametrize("algorithm", ["rsassa_pss", "sha256_ecdsa", "md5_rsa", "1.2.3.4"])
def test_unsupported_signature_algorithms_are_bad_alg(algorithm):
    msg, tx, signer, key = pkcs_req()
    info = cms.ContentInfo.load(msg)
    info["content"]["signer_infos"][0]["signature_algorithm"] = {"algorithm": algorithm}
    with pytest.raises(ScepMessageError) as e:
        parse_pki_message(info.dump(force=True), ca())
    assert e.value.fail_info == FailInfo.badAlg


@openssl
def test_tiny_signer_key_is_bad_alg(tmp_path):
    _openssl("genrsa", "-out", "tiny.pem", "512", cwd=tmp_path)  # cryptography will not generate one
    tiny = serialization.load_pem_private_key((tmp_path / "tiny.pem").read_bytes(), None)
    signer = self_signed(tiny, "ipad-tiny")
    csr = make_csr(device_key(), "ipad-tiny", CHALLENGE).public_bytes(DER)
    msg = resign(envelope.encrypt(csr, ca().cert), signer, tiny, "19")
    assert refusal(msg, "tx-1", signer, tiny).fail_info == FailInfo.badAlg


# --- tampering -----------------------------------------------------------------------------

def _tamper(msg: bytes, how: str) -> bytes:
    info = cms.ContentInfo.load(msg)
    sd = info["content"]
    si = sd["signer_infos"][0]
    if how == "content":
        env = bytearray(sd["encap_content_info"]["content"].native)
        env[-5] ^= 0x01
        sd["encap_content_info"]["content"] = bytes(env)
    elif how == "signature":
        sig = bytearray(si["signature"].native)
        sig[10] ^= 0x80
        si["signature"] = bytes(sig)
    elif how == "attribute":
        attrs = [a for a in si["signed_attrs"] if a["type"].dotted != scep_cms.OID_TRANSACTION_ID]
        attrs.append(scep_cms.attr(scep_cms.OID_TRANSACTION_ID, scep_cms.printable("forged")))
        si["signed_attrs"] = attrs
    elif how == "digest":
        si["digest_algorithm"] = {"algorithm": "md5"}
    return info.dump(force=True)


@pytest.mark.parametrize("how,fail_info", [
    ("content", FailInfo.badMessageCheck), ("signature", FailInfo.badMessageCheck),
    ("attribute", FailInfo.badMessageCheck), ("digest", FailInfo.badAlg),
])
def test_tampered_messages_are_refused(how, fail_info):
    msg, tx, signer, key = pkcs_req()
    tampered = _tamper(msg, how)
    with pytest.raises(ScepMessageError) as e:
        parse_pki_message(tampered, ca())
    assert e.value.fail_info == fail_info and e.value.partial is not None
    assert refusal(tampered, "forged" if how == "attribute" else tx, signer, key).fail_info == fail_info


def test_unanswerable_messages_raise_parse_error():
    msg, tx, signer, key = pkcs_req()
    info = cms.ContentInfo.load(msg)
    info["content"]["certificates"] = []  # signer certificate gone: nobody to answer
    for data in (b"", b"\x30\x00", os.urandom(300), info.dump(force=True)):
        with pytest.raises(ParseError):
            handle_pki_operation(data, FakeService())


def test_client_rejects_bad_cert_reps():
    msg, tx, signer, key = pkcs_req()
    reply = handle_pki_operation(msg, FakeService())
    kw = dict(recipient_key=key, recipient_cert=signer, ca_cert=ca().cert)
    with pytest.raises(ParseError, match="transactionID"):
        parse_cert_rep(reply, transaction_id="other", **kw)
    with pytest.raises(ParseError, match="recipientNonce"):
        parse_cert_rep(reply, transaction_id=tx, sender_nonce=b"x" * 16, **kw)
    with pytest.raises(ParseError):
        parse_cert_rep(reply, transaction_id=tx, **{**kw, "ca_cert": pki.create_ca("Evil", "x").cert})
    with pytest.raises(ParseError):
        parse_cert_rep(_tamper(reply, "content"), transaction_id=tx, **kw)


# --- OpenSSL interop -----------------------------------------------------------------------

@openssl
@pytest.mark.parametrize("cipher", ["aes128", "aes256", "3des"])
def test_openssl_reads_our_messages(cipher, tmp_path):
    msg, tx, signer, key = pkcs_req(cipher=cipher)
    (tmp_path / "msg.der").write_bytes(msg)
    (tmp_path / "ca.pem").write_bytes(ca().cert_pem())
    (tmp_path / "ca.key").write_bytes(ca().key_pem())
    _openssl("cms", "-verify", "-binary", "-noverify", "-inform", "DER", "-in", "msg.der", "-out", "env.der",
             cwd=tmp_path)
    _openssl("cms", "-decrypt", "-binary", "-inform", "DER", "-in", "env.der", "-recip", "ca.pem",
             "-inkey", "ca.key", "-out", "csr.der", cwd=tmp_path)
    assert x509.load_der_x509_csr((tmp_path / "csr.der").read_bytes()).public_key() == key.public_key()

    (tmp_path / "rep.der").write_bytes(handle_pki_operation(msg, FakeService()))
    (tmp_path / "dev.pem").write_bytes(signer.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "dev.key").write_bytes(pki.Identity(signer, key).key_pem())
    _openssl("cms", "-verify", "-binary", "-CAfile", "ca.pem", "-purpose", "any", "-inform", "DER",
             "-in", "rep.der", "-out", "repenv.der", cwd=tmp_path)
    _openssl("cms", "-decrypt", "-binary", "-inform", "DER", "-in", "repenv.der", "-recip", "dev.pem",
             "-inkey", "dev.key", "-out", "certs.p7", cwd=tmp_path)
    certs = pkcs7.load_der_pkcs7_certificates((tmp_path / "certs.p7").read_bytes())
    assert [c.public_key() for c in certs] == [key.public_key()]


@openssl
@pytest.mark.parametrize("flag,cipher", [("-aes128", "aes128"), ("-aes256", "aes256"), ("-des3", "3des")])
@pytest.mark.parametrize("stream", [False, True])
def test_we_decrypt_openssl_envelopes(flag, cipher, stream, tmp_path):
    (tmp_path / "ca.pem").write_bytes(ca().cert_pem())
    (tmp_path / "plain").write_bytes(b"certification request " * 40)
    _openssl("cms", "-encrypt", "-binary", flag, *(["-stream"] if stream else []), "-outform", "DER",
             "-in", "plain", "-out", "env.der", "ca.pem", cwd=tmp_path)
    plain, used = envelope.decrypt((tmp_path / "env.der").read_bytes(), ca().cert, ca().key)
    assert (plain, used) == (b"certification request " * 40, cipher)


# --- HTTP routes ---------------------------------------------------------------------------

@pytest.fixture
def http():
    service = FakeService()
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(make_scep_router(lambda: service, max_body=16 * 1024))
    with TestClient(app) as client:
        yield client


def test_get_ca_caps_and_ca_cert(http):
    r = http.get("/scep", params={"operation": "GetCACaps"})
    assert r.status_code == 200 and set(r.text.split()) == set(CA_CAPS)
    assert {"POSTPKIOperation", "SHA-256", "AES", "SCEPStandard", "Renewal", "SHA-1", "DES3"} <= set(CA_CAPS)
    r = http.get("/scep", params={"operation": "GetCACert", "message": "any"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-x509-ca-cert"
    assert r.content == ca().cert_der


def test_get_ca_cert_with_chain_is_pkcs7():
    root = ca()
    inter = pki.issue_identity(root, "Intermediate")
    app = FastAPI()
    app.include_router(make_scep_router(lambda: FakeService(pki.Identity(inter.cert, inter.key, (root.cert,)))))
    r = TestClient(app).get("/scep", params={"operation": "GetCACert"})
    assert r.headers["content-type"] == "application/x-x509-ca-ra-cert"
    assert set(pkcs7.load_der_pkcs7_certificates(r.content)) == {inter.cert, root.cert}


@pytest.mark.parametrize("method", ["POST", "GET", "GET-unescaped"])
def test_pki_operation_over_http(http, method):
    msg, tx, signer, key = pkcs_req()
    if method == "POST":
        r = http.post("/scep?operation=PKIOperation", content=msg,
                      headers={"Content-Type": "application/x-pki-message"})
    else:
        b64 = base64.b64encode(msg).decode()
        r = http.get(f"/scep?operation=PKIOperation&message={quote(b64, safe='') if method == 'GET' else b64}")
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-pki-message"
    cert = parse_cert_rep(r.content, transaction_id=tx, recipient_key=key, recipient_cert=signer, ca_cert=ca().cert)
    cert.verify_directly_issued_by(ca().cert)


def test_refusal_over_http_is_a_signed_reply(http):
    msg, tx, signer, key = pkcs_req(challenge="nope")
    r = http.post("/scep", params={"operation": "PKIOperation"}, content=msg)
    assert r.status_code == 200
    with pytest.raises(ScepRefused):
        parse_cert_rep(r.content, transaction_id=tx, recipient_key=key, recipient_cert=signer, ca_cert=ca().cert)


def test_bad_http_requests(http):
    post = functools.partial(http.post, "/scep", params={"operation": "PKIOperation"})
    assert post(content=b"definitely not DER").status_code == 400
    assert post(content=b"").status_code == 400
    assert post(content=b"\x30" * (17 * 1024)).status_code == 413
    assert http.post("/scep", params={"operation": "GetCACert"}, content=b"x").status_code == 400
    assert http.get("/scep", params={"operation": "PKIOperation", "message": "!!!"}).status_code == 400
    assert http.get("/scep", params={"operation": "PKIOperation"}).status_code == 400
    assert http.get("/scep", params={"operation": "Nope"}).status_code == 400


# --- fuzzing -------------------------------------------------------------------------------

@functools.cache
def valid_message() -> bytes:
    return pkcs_req()[0]


@functools.cache
def valid_reply() -> tuple[bytes, str, x509.Certificate, object]:
    msg, tx, signer, key = pkcs_req()
    return handle_pki_operation(msg, FakeService()), tx, signer, key


mutations = st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255), st.sampled_from("rid")),
                     min_size=1, max_size=6)


def _mutate(data: bytes, ops) -> bytes:
    out = bytearray(data)
    for pos, byte, op in ops:
        i = pos % (len(out) + 1)
        if op == "r" and i < len(out):
            out[i] = byte
        elif op == "i":
            out.insert(i, byte)
        elif op == "d" and i < len(out):
            del out[i]
    return bytes(out)


fuzz = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@fuzz
@given(st.binary(max_size=3000))
def test_fuzz_random_bytes_only_raise_mdm_errors(data):
    for call in (lambda: parse_pki_message(data, ca()), lambda: handle_pki_operation(data, FakeService()),
                 lambda: envelope.decrypt(data, ca().cert, ca().key)):
        with pytest.raises(MDMError):
            call()


@fuzz
@given(mutations)
def test_fuzz_mutated_requests_only_raise_mdm_errors(ops):
    data = _mutate(valid_message(), ops)
    try:
        assert isinstance(parse_pki_message(data, ca()), ScepRequest)
    except MDMError:
        pass
    try:
        assert isinstance(handle_pki_operation(data, FakeService()), bytes)
    except MDMError:
        pass


def test_a_signer_certificate_with_an_invalid_version_is_a_parse_error():
    """Found by the fuzzer above: cryptography raises InvalidVersion (not a ValueError) for a
    certificate whose version is neither v1 nor v3; that is malformed input, not a server error."""
    from tests.support.certs import with_version

    msg, _, signer, _ = pkcs_req()
    der = signer.public_bytes(serialization.Encoding.DER)
    data = msg.replace(der, with_version(der, 5))
    assert data != msg
    with pytest.raises(ParseError, match="InvalidVersion"):
        parse_pki_message(data, ca())
    with pytest.raises(MDMError):
        handle_pki_operation(data, FakeService())


@fuzz
@given(mutations)
def test_fuzz_mutated_replies_only_raise_mdm_errors(ops):
    reply, tx, signer, key = valid_reply()
    try:
        parse_cert_rep(_mutate(reply, ops), transaction_id=tx, recipient_key=key, recipient_cert=signer,
                       ca_cert=ca().cert)
    except MDMError:
        pass


@functools.cache
def fuzz_signer() -> x509.Certificate:
    return self_signed(device_key(), "ipad-fuzz")


@functools.cache
def fuzz_csr() -> bytes:
    return make_csr(device_key(), "ipad-fuzz", CHALLENGE).public_bytes(DER)


@functools.cache
def fuzz_envelope() -> bytes:
    return envelope.encrypt(fuzz_csr(), ca().cert, "3des")


@fuzz
@given(mutations, st.sampled_from(["envelope", "csr"]))
def test_fuzz_validly_signed_garbage_always_gets_a_signed_reply(ops, layer):
    """Once the signature checks out, every problem deeper down is a FAILURE CertRep."""
    if layer == "envelope":
        content = _mutate(fuzz_envelope(), ops)
    else:
        content = envelope.encrypt(_mutate(fuzz_csr(), ops), ca().cert)
    reply = handle_pki_operation(resign(content, fuzz_signer(), device_key(), "19"), FakeService())
    assert scep_cms.string_attr(reply_attrs(reply), scep_cms.OID_PKI_STATUS) in ("0", "2")

