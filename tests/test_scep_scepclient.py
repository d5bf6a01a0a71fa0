"""Interop: Debian's ``scepclient`` (micromdm/scep) against our /scep router on a real uvicorn."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import uvicorn
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from fastapi import FastAPI

from app.errors import install_error_handlers
from app.routes.scep import make_scep_router
from mdm import pki
from mdm.scep import FailInfo, ScepRefused, ScepRequest

SCEPCLIENT = "/usr/bin/scepclient"
CHALLENGE = "secret"

pytestmark = pytest.mark.skipif(
    not os.path.exists(SCEPCLIENT), reason="Debian's scepclient (package 'scep') is not installed"
)


class FakeScepService:
    """In-memory ScepService: one challenge, renewals for certificates it issued."""

    def __init__(self) -> None:
        self._ca = pki.create_ca("scepclient Test CA", "schoolmdm tests")
        self.issued: dict[bytes, x509.Certificate] = {}
        self.requests: list[ScepRequest] = []
        self.lock = threading.Lock()

    def ca(self) -> pki.Identity:
        return self._ca

    def issue(self, request: ScepRequest) -> x509.Certificate:
        with self.lock:
            self.requests.append(request)
        if request.message_type == "RenewalReq":
            if pki.sha1_fingerprint(request.signer_cert) not in self.issued:
                raise ScepRefused("unknown certificate", FailInfo.badCertId)
        elif request.challenge != CHALLENGE:
            raise ScepRefused("wrong challenge", FailInfo.badRequest)
        cert = pki.sign_csr(self._ca, request.csr, days=30)
        with self.lock:
            self.issued[pki.sha1_fingerprint(cert)] = cert
        return cert


@pytest.fixture(scope="module")
def server():
    service = FakeScepService()
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(make_scep_router(lambda: service))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/scep", service
    finally:
        srv.should_exit = True
        thread.join(timeout=10)
        sock.close()


def run_scepclient(url: str, workdir: Path, *, challenge: str, cn: str) -> subprocess.CompletedProcess:
    args = [
        shutil.which(SCEPCLIENT) or SCEPCLIENT,
        "-server-url", url,
        "-challenge", challenge,
        "-private-key", str(workdir / "key.pem"),
        "-certificate", str(workdir / "cert.pem"),
        "-cn", cn,
        "-organization", "schoolmdm tests",
        "-debug",
    ]
    return subprocess.run(args, cwd=workdir, capture_output=True, text=True, timeout=120)


def check_issued(path: Path, ca: pki.Identity, cn: str) -> x509.Certificate:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    cert.verify_directly_issued_by(ca.cert)
    assert cert.issuer == ca.cert.subject
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == cn
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku
    return cert


def test_scepclient_enrolls_and_renews(server, tmp_path):
    url, service = server
    result = run_scepclient(url, tmp_path, challenge=CHALLENGE, cn="ipad-0001")
    assert result.returncode == 0, result.stdout + result.stderr
    cert = check_issued(tmp_path / "cert.pem", service.ca(), "ipad-0001")
    request = service.requests[-1]
    assert request.message_type == "PKCSReq"
    assert request.challenge == CHALLENGE
    assert request.csr is not None

    # A second run with the certificate present is a RenewalReq signed with it.
    result = run_scepclient(url, tmp_path, challenge=CHALLENGE, cn="ipad-0001")
    assert result.returncode == 0, result.stdout + result.stderr
    renewed = check_issued(tmp_path / "cert.pem", service.ca(), "ipad-0001")
    assert renewed.serial_number != cert.serial_number
    renewal = service.requests[-1]
    assert renewal.message_type == "RenewalReq"
    assert renewal.signer_cert == cert


def test_scepclient_wrong_challenge_is_refused(server, tmp_path):
    url, service = server
    result = run_scepclient(url, tmp_path, challenge="not-the-secret", cn="ipad-0002")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "badRequest" in output, output
    assert not (tmp_path / "cert.pem").exists()
    assert service.requests[-1].challenge == "not-the-secret"
