"""A scripted test iPad: every step of enrollment and the command loop, one call each."""

from __future__ import annotations

import itertools
import os
import uuid
from dataclasses import dataclass, field

from cryptography import x509

from mdm import pki, plist
from mdm.checkin import build_checkin
from mdm.commands import build_report, parse_command
from mdm.enrollment import find_payload
from mdm.scep import build_request, make_csr, parse_cert_rep, self_signed
from mdm.signature import sign_detached
from profiles.signing import verify_profile

CHECKIN_TYPE = "application/x-apple-aspen-mdm-checkin"
CONNECT_TYPE = "application/x-apple-aspen-mdm"
_KEYS: list = []
_NEXT = itertools.count()


def pooled_key():
    """Round-robin over four RSA keys: key generation is the slow part of a test device."""
    i = next(_NEXT) % 4
    while len(_KEYS) <= i:
        _KEYS.append(pki.new_key(2048))
    return _KEYS[i]


@dataclass
class TestDevice:
    __test__ = False  # not a pytest class
    http: object  # TestClient or httpx.Client
    serial: str = field(default_factory=lambda: "DMP" + uuid.uuid4().hex[:9].upper())
    udid: str = field(default_factory=lambda: "00008103-" + uuid.uuid4().hex[:16].upper())
    key: object = field(default_factory=pooled_key)
    cert: x509.Certificate | None = None
    profile: dict | None = None
    token: bytes = field(default_factory=lambda: os.urandom(32))
    push_magic: str = field(default_factory=lambda: str(uuid.uuid4()).upper())
    digest: str = "sha256"

    # --- enrollment
    def fetch_profile(self, school: str, token: str) -> dict:
        r = self.http.get(f"/enroll/{school}", params={"token": token, "serial": self.serial})
        assert r.status_code == 200, r.text
        ca = self.ca_cert()
        self.profile = plist.loads(verify_profile(r.content, ca))
        return self.profile

    def ca_cert(self) -> x509.Certificate:
        r = self.http.get("/scep", params={"operation": "GetCACert"})
        assert r.status_code == 200, r.text
        return pki.load_cert(r.content)

    @property
    def topic(self) -> str:
        return find_payload(self.profile, "com.apple.mdm")["Topic"]

    def scep(self, challenge: str | None = None, cipher: str = "aes256") -> x509.Certificate:
        content = find_payload(self.profile, "com.apple.security.scep")["PayloadContent"]
        ca = self.ca_cert()
        csr = make_csr(self.key, self.serial, challenge if challenge is not None else content["Challenge"])
        signer = self_signed(self.key, self.serial)
        msg, tx = build_request(self.key, csr, signer, self.key, ca, cipher=cipher)
        r = self.http.post("/scep", params={"operation": "PKIOperation"}, content=msg,
                           headers={"Content-Type": "application/x-pki-message"})
        assert r.status_code == 200, r.text
        self.cert = parse_cert_rep(r.content, transaction_id=tx, recipient_key=self.key, recipient_cert=signer,
                                   ca_cert=ca)
        return self.cert

    def enroll(self, school: str, token: str) -> "TestDevice":
        self.fetch_profile(school, token)
        self.scep()
        r = self.checkin(self.authenticate_body())
        assert r.status_code == 200, r.text
        r = self.checkin(self.token_update_body())
        assert r.status_code == 200, r.text
        return self

    # --- bodies
    def authenticate_body(self, **extra) -> bytes:
        return build_checkin("Authenticate", self.udid, Topic=self.topic, SerialNumber=self.serial,
                             ProductName="iPad13,18", ModelName="iPad", OSVersion="17.5.1", BuildVersion="21F90",
                             DeviceName=f"iPad {self.serial}", **extra)

    def token_update_body(self, **extra) -> bytes:
        return build_checkin("TokenUpdate", self.udid, Topic=self.topic, Token=self.token, PushMagic=self.push_magic,
                             UnlockToken=b"unlock-" + self.serial.encode(), NotOnConsole=False, **extra)

    # --- transport
    def headers(self, body: bytes, content_type: str, cert=None, key=None) -> dict:
        sig = sign_detached(body, cert or self.cert, key or self.key, digest=self.digest)
        return {"Mdm-Signature": sig, "Content-Type": content_type}

    def checkin(self, body: bytes, *, sign: bool = True, **kw):
        h = self.headers(body, CHECKIN_TYPE, **kw) if sign else {"Content-Type": CHECKIN_TYPE}
        return self.http.put("/mdm/checkin", content=body, headers=h)

    def connect(self, status: str = "Idle", command_uuid: str | None = None, *, sign: bool = True, **result):
        body = build_report(self.udid, status, command_uuid, **result)
        h = self.headers(body, CONNECT_TYPE) if sign else {"Content-Type": CONNECT_TYPE}
        return self.http.put("/mdm/connect", content=body, headers=h)

    @staticmethod
    def command_of(response) -> tuple[str, dict] | None:
        if not response.content:
            return None
        return parse_command(response.content)
