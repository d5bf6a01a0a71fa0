"""SCEP against the real service: one-time challenges, ciphers, renewal, failures as CertRep FAILURE."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from mdm import pki
from mdm.enrollment import find_payload
from mdm.scep import FailInfo, ScepRefused, build_request, make_csr, parse_cert_rep, self_signed
from tests.support.device import TestDevice
from tests.support.live import LiveServer, free_socket


def scep_post(http, msg: bytes):
    return http.post("/scep", params={"operation": "PKIOperation"}, content=msg,
                     headers={"Content-Type": "application/x-pki-message"})


def test_get_ca_caps_and_cert(client, container):
    caps = client.get("/scep", params={"operation": "GetCACaps"}).text.split()
    for cap in ("POSTPKIOperation", "SHA-256", "AES", "Renewal"):
        assert cap in caps
    r = client.get("/scep", params={"operation": "GetCACert"})
    assert r.headers["content-type"].startswith("application/x-x509-ca-cert")
    assert pki.load_cert(r.content) == container.pki.ca.cert


@pytest.mark.parametrize("cipher", ["aes128", "aes256", "3des"])
def test_issues_client_certificates_for_every_cipher(client, school, cipher):
    dev = TestDevice(client)
    dev.fetch_profile(school["id"], school["token"])
    cert = dev.scep(cipher=cipher)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku
    assert cert.issuer == dev.ca_cert().subject
    assert dev.serial in cert.subject.rfc4514_string()


def test_challenge_replay_is_refused(client, school):
    dev = TestDevice(client)
    profile = dev.fetch_profile(school["id"], school["token"])
    dev.scep()
    challenge = find_payload(profile, "com.apple.security.scep")["PayloadContent"]["Challenge"]
    again = TestDevice(client)
    again.profile = profile
    with pytest.raises(ScepRefused) as e:
        again.scep(challenge=challenge)
    assert e.value.fail_info == FailInfo.badRequest


def test_wrong_challenge_gets_failure_certrep_not_500(client, school):
    dev = TestDevice(client)
    dev.fetch_profile(school["id"], school["token"])
    with pytest.raises(ScepRefused) as e:
        dev.scep(challenge="guessed")
    assert e.value.fail_info == FailInfo.badRequest


def test_expired_challenge_is_refused(client, school, container, monkeypatch):
    import datetime as dt

    dev = TestDevice(client)
    dev.fetch_profile(school["id"], school["token"])
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=container.settings.challenge_ttl_seconds + 5)
    monkeypatch.setattr(container.scep, "clock", lambda: later)
    with pytest.raises(ScepRefused):
        dev.scep()


def test_garbage_pkioperation_is_400(client):
    r = scep_post(client, b"\x30\x03\x02\x01\x00")
    assert r.status_code == 400
    r = client.get("/scep", params={"operation": "Bogus"})
    assert r.status_code == 400


def test_renewal_rebinds_the_device(enrolled, client, container):
    ca = enrolled.ca_cert()
    new_key = pki.new_key()
    csr = make_csr(new_key, enrolled.serial, None)
    msg, tx = build_request(new_key, csr, enrolled.cert, enrolled.key, ca, message_type="RenewalReq")
    r = scep_post(client, msg)
    new_cert = parse_cert_rep(r.content, transaction_id=tx, recipient_key=enrolled.key,
                              recipient_cert=enrolled.cert, ca_cert=ca)
    old_cert, old_key = enrolled.cert, enrolled.key
    enrolled.cert, enrolled.key = new_cert, new_key
    assert enrolled.connect("Idle").status_code == 200
    enrolled.cert, enrolled.key = old_cert, old_key
    assert enrolled.connect("Idle").status_code == 403  # the old identity no longer opens the device
    # and it cannot be renewed twice
    msg, tx = build_request(new_key, make_csr(new_key, enrolled.serial, None), old_cert, old_key, ca,
                            message_type="RenewalReq")
    with pytest.raises(ScepRefused) as e:
        parse_cert_rep(scep_post(client, msg).content, transaction_id=tx, recipient_key=old_key,
                       recipient_cert=old_cert, ca_cert=ca)
    assert e.value.fail_info == FailInfo.badCertId


def test_renewal_signed_by_a_stranger_is_refused(client, container):
    ca = container.pki.ca.cert
    k = pki.new_key()
    stranger = self_signed(k, "stranger")
    msg, tx = build_request(k, make_csr(k, "stranger", None), stranger, k, ca, message_type="RenewalReq")
    with pytest.raises(ScepRefused):
        parse_cert_rep(scep_post(client, msg).content, transaction_id=tx, recipient_key=k,
                       recipient_cert=stranger, ca_cert=ca)


@pytest.mark.skipif(not shutil.which("scepclient"), reason="Debian's scepclient (package scep) not installed")
def test_debian_scepclient_enrolls_against_the_real_service(container, school, tmp_path):
    from app.main import create_app

    challenge = container.enrollment.new_challenge(school["id"], "SCEPCLIENT1")
    app = create_app(container.settings, container=container, background=False)
    pkidir = container.pki.dir
    with LiveServer(app, free_socket(), str(pkidir / "tls.pem"), str(pkidir / "tls.key")) as srv:
        # scepclient speaks plain HTTP or trusts system CAs only; give it our TLS CA via SSL_CERT_FILE
        env = dict(os.environ, SSL_CERT_FILE=str(pkidir / "ca.pem"))
        key, out = tmp_path / "k.pem", tmp_path / "c.pem"
        p = subprocess.run(["scepclient", "-server-url", f"{srv.url}/scep", "-challenge", challenge,
                            "-private-key", str(key), "-certificate", str(out), "-cn", "SCEPCLIENT1",
                            "-organization", "Test"], env=env, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr + p.stdout
        cert = x509.load_pem_x509_certificate(out.read_bytes())
        assert cert.issuer == container.pki.ca.cert.subject
        # the challenge was one-time: a second run with it is refused
        p2 = subprocess.run(["scepclient", "-server-url", f"{srv.url}/scep", "-challenge", challenge,
                             "-private-key", str(tmp_path / "k2.pem"), "-certificate", str(tmp_path / "c2.pem"),
                             "-cn", "SCEPCLIENT1"], env=env, capture_output=True, text=True, timeout=60)
        assert p2.returncode != 0
        assert not (tmp_path / "c2.pem").exists() or (tmp_path / "c2.pem").read_bytes() != out.read_bytes()
