"""The network side of one virtual iPad: enrollment profile, SCEP, check-in, connect.

``DeviceClient`` drives a ``VirtualIPad`` over a shared ``simulator.http.HTTPClient`` with
Apple's wire format: the signed enrollment profile is verified against the CA it
carries, the identity comes from SCEP (RFC 8894) using the profile's challenge and
subject, and every check-in and report is signed (``Mdm-Signature``).
"""

from __future__ import annotations

import asyncio

import base64
import datetime as dt
import hashlib
import math
import time
from array import array
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID

from mdm import plist
from mdm.enrollment import find_payload
from mdm.errors import MDMError, ParseError
from mdm.pki import load_cert, new_key, utcnow
from mdm.scep import build_request, parse_cert_rep, request_sender_nonce, self_signed
from profiles.signing import unsign_profile, verify_profile
from simulator.device import VirtualIPad
from simulator.http import HTTPClient, HTTPError, Response
from simulator.keypool import KeyPool, SignatureCache
from simulator.signer import DetachedSigner

CHECKIN_TYPE = "application/x-apple-aspen-mdm-checkin"
CONNECT_TYPE = "application/x-apple-aspen-mdm"
PKI_MESSAGE_TYPE = "application/x-pki-message"
MAX_COMMANDS_PER_SESSION = 1000
_NAME_OIDS = {
    "C": NameOID.COUNTRY_NAME, "ST": NameOID.STATE_OR_PROVINCE_NAME, "L": NameOID.LOCALITY_NAME,
    "O": NameOID.ORGANIZATION_NAME, "OU": NameOID.ORGANIZATIONAL_UNIT_NAME, "CN": NameOID.COMMON_NAME,
    "E": NameOID.EMAIL_ADDRESS, "EMAILADDRESS": NameOID.EMAIL_ADDRESS, "UID": NameOID.USER_ID,
    "DC": NameOID.DOMAIN_COMPONENT, "SERIALNUMBER": NameOID.SERIAL_NUMBER,
}


class SimulatorError(MDMError):
    """A virtual iPad could not complete a protocol step (``stage`` says which)."""

    code = "simulator_error"

    def __init__(self, message: str, *, stage: str = "", status: int | None = None) -> None:
        super().__init__(message, details={"stage": stage, "status": status})
        self.stage = stage
        self.status = status


class LatencyRecorder:
    """Wall time of every HTTP request by label ("PUT /mdm/connect"), for benchmarks.

    Keeps each sample (8 bytes), so it is opt-in (``ClientStats(latency=LatencyRecorder())``);
    ``reset()`` starts a new measurement phase. Times are ``time.perf_counter()`` seconds and
    include waiting for a pooled connection and the client's own event-loop delays.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.samples: dict[str, array] = {}
        self.first_start: float | None = None
        self.last_end: float | None = None

    def record(self, label: str, start: float, end: float) -> None:
        a = self.samples.get(label)
        if a is None:
            a = self.samples[label] = array("d")
        a.append(end - start)
        if self.first_start is None or start < self.first_start:
            self.first_start = start
        if self.last_end is None or end > self.last_end:
            self.last_end = end

    @property
    def count(self) -> int:
        return sum(len(a) for a in self.samples.values())

    @staticmethod
    def percentiles(values, ps: tuple[float, ...] = (50, 95, 99)) -> dict:
        """Nearest-rank percentiles in milliseconds: {"count", "p50", ..., "max"}."""
        v = sorted(values)
        out: dict = {"count": len(v)}
        for p in ps:
            out[f"p{p:g}"] = round(v[max(0, math.ceil(len(v) * p / 100) - 1)] * 1000, 2) if v else None
        out["max"] = round(v[-1] * 1000, 2) if v else None
        return out

    def summary(self) -> dict:
        """{"all": {...}, "by_request": {label: {...}}} with count, p50/p95/p99 and max in ms."""
        every = array("d")
        for a in self.samples.values():
            every.extend(a)
        return {"all": self.percentiles(every),
                "by_request": {k: self.percentiles(a) for k, a in sorted(self.samples.items())}}


@dataclass
class ClientStats:
    """Counters shared by the clients of a fleet."""

    sessions: int = 0
    session_errors: int = 0
    requests: Counter = field(default_factory=Counter)  # "PUT /mdm/connect" -> n
    http_errors: Counter = field(default_factory=Counter)  # "PUT /mdm/connect 500" -> n
    errors: Counter = field(default_factory=Counter)  # stage -> n
    error_samples: deque = field(default_factory=lambda: deque(maxlen=20))
    latency: LatencyRecorder | None = None  # per-request wall times, when a benchmark asks
    report_retries: int = 0  # reports sent again after a transport failure or 5xx

    def note_error(self, stage: str, message: str) -> None:
        self.errors[stage] += 1
        self.error_samples.append(f"{stage}: {message}")


@dataclass(frozen=True)
class EnrollmentConfig:
    """What an iPad takes from the enrollment profile."""

    profile: dict
    ca_cert: x509.Certificate  # from com.apple.security.root
    scep_url: str
    challenge: str | None
    subject: x509.Name
    key_size: int
    ca_fingerprint: bytes | None
    server_url: str
    checkin_url: str
    topic: str
    sign_message: bool


def subject_name(subject: list) -> x509.Name:
    """SCEP ``Subject`` (array of RDNs, each an array of [name, value]) -> x509.Name."""
    rdns = []
    for rdn in subject:
        attrs = []
        for pair in rdn:
            if not isinstance(pair, list) or len(pair) != 2 or not all(isinstance(x, str) for x in pair):
                raise ParseError("SCEP Subject entries must be [name, value] pairs")
            name, value = pair
            oid = _NAME_OIDS.get(name.upper()) or (x509.ObjectIdentifier(name) if name[:1].isdigit() else None)
            if oid is None:
                raise ParseError(f"SCEP Subject uses an unknown attribute {name!r}")
            attrs.append(x509.NameAttribute(oid, value))
        if attrs:
            rdns.append(x509.RelativeDistinguishedName(attrs))
    return x509.Name(rdns)


def parse_enrollment_profile(der: bytes, *, clock: Callable[[], dt.datetime] = utcnow) -> EnrollmentConfig:
    """Check the profile's signature chains to the CA in its root payload; read its payloads."""
    content, _ = unsign_profile(der)
    profile = plist.loads_dict(content)
    try:
        root = find_payload(profile, "com.apple.security.root")
        scep = find_payload(profile, "com.apple.security.scep")
        mdm = find_payload(profile, "com.apple.mdm")
    except KeyError as e:
        raise ParseError(f"enrollment profile lacks a {e.args[0]} payload") from None
    ca = load_cert(root.get("PayloadContent") or b"")
    verify_profile(der, ca, clock=clock)
    sc = scep.get("PayloadContent")
    if not isinstance(sc, dict) or not isinstance(sc.get("URL"), str):
        raise ParseError("SCEP payload lacks a URL")
    if mdm.get("IdentityCertificateUUID") != scep.get("PayloadUUID"):
        raise ParseError("MDM payload's IdentityCertificateUUID does not name the SCEP payload")
    for key in ("ServerURL", "Topic"):
        if not isinstance(mdm.get(key), str) or not mdm[key]:
            raise ParseError(f"MDM payload lacks {key}")
    return EnrollmentConfig(
        profile=profile, ca_cert=ca, scep_url=sc["URL"], challenge=sc.get("Challenge"),
        subject=subject_name(sc.get("Subject") or []), key_size=int(sc.get("Keysize", 2048)),
        ca_fingerprint=sc.get("CAFingerprint"), server_url=mdm["ServerURL"],
        checkin_url=mdm.get("CheckInURL") or mdm["ServerURL"], topic=mdm["Topic"],
        sign_message=bool(mdm.get("SignMessage", False)),
    )


def _matches(fingerprint: bytes, der: bytes) -> bool:
    algo = {16: "md5", 20: "sha1", 32: "sha256"}.get(len(fingerprint))
    return algo is not None and hashlib.new(algo, der).digest() == fingerprint


def pick_ca(body: bytes, fingerprint: bytes | None) -> x509.Certificate:
    """The CA from a GetCACert reply (a bare certificate or a certs-only PKCS#7)."""
    try:
        certs = [load_cert(body)]
    except ParseError:
        try:
            certs = pkcs7.load_der_pkcs7_certificates(body)
        except ValueError:
            raise ParseError("GetCACert reply holds no certificate") from None
    if not fingerprint:
        return certs[0]
    for c in certs:
        if _matches(fingerprint, c.public_bytes(serialization.Encoding.DER)):
            return c
    raise ParseError("no certificate from GetCACert matches the profile's CAFingerprint")


@lru_cache(maxsize=256)
def _label(method: str, url: str) -> str:
    """What requests are counted and timed by: "PUT /mdm/connect"."""
    return f"{method} {urlsplit(url).path}"


class DeviceClient:
    """One iPad's HTTP conversation with the server (the HTTP client is shared)."""

    def __init__(self, device: VirtualIPad, http: HTTPClient, *, keys: KeyPool | None = None,
                 signatures: SignatureCache | None = None, stats: ClientStats | None = None,
                 max_commands: int = MAX_COMMANDS_PER_SESSION, report_retries: int = 6,
                 retry_backoff: float = 0.25) -> None:
        self.device = device
        self.report_retries = report_retries
        self.retry_backoff = retry_backoff
        self.http = http
        self.keys = keys or KeyPool(1)
        self.signatures = signatures or SignatureCache()
        self.stats = stats or ClientStats()
        self.max_commands = max_commands
        self.config: EnrollmentConfig | None = None
        self._signer: DetachedSigner | None = None

    async def _request(self, stage: str, method: str, url: str, **kw) -> Response:
        label = _label(method, url)
        stats = self.stats
        stats.requests[label] += 1
        latency = stats.latency
        t0 = time.perf_counter()
        try:
            r = await self.http.request(method, url, **kw)
        except HTTPError as e:
            stats.http_errors[f"{label} {type(e).__name__}"] += 1
            raise SimulatorError(f"{label}: {type(e).__name__}: {e}", stage=stage) from None
        finally:
            if latency is not None:
                latency.record(label, t0, time.perf_counter())
        if r.status_code != 200:
            stats.http_errors[f"{label} {r.status_code}"] += 1
            raise SimulatorError(f"{label} answered {r.status_code}: {r.text[:200]}", stage=stage,
                                 status=r.status_code)
        return r

    def signer(self) -> DetachedSigner:
        """The device identity's signer (made again when the identity changes)."""
        d, s = self.device, self._signer
        if s is None or s.cert is not d.cert or s.key is not d.key:
            s = self._signer = DetachedSigner(d.cert, d.key)
        return s

    async def _put_signed(self, stage: str, url: str, body: bytes, content_type: str, *, cached: bool = False) -> bytes:
        headers = {"Content-Type": content_type}
        if self.config is None or self.config.sign_message:
            signer = self.signer()
            headers["Mdm-Signature"] = self.signatures.sign(body, signer) if cached else signer.sign(body)
        r = await self._request(stage, "PUT", url, content=body, headers=headers)
        return r.content

    # -- enrollment ------------------------------------------------------------------------
    async def enroll(self, server_url: str, school: str, token: str) -> VirtualIPad:
        """Install the enrollment profile: verify it, get an identity over SCEP, check in."""
        d = self.device
        r = await self._request("profile", "GET", f"{server_url.rstrip('/')}/enroll/{school}",
                                params={"token": token, "serial": d.serial})
        return await self.install_enrollment_profile(r.content)

    async def install_enrollment_profile(self, body: bytes) -> VirtualIPad:
        """The signed enrollment profile from the server (by URL with a token, or by ADE)."""
        d = self.device
        try:
            cfg = parse_enrollment_profile(body, clock=d.clock)
        except MDMError as e:
            raise SimulatorError(f"enrollment profile refused: {e.message}", stage="profile") from None
        key = self.keys.next()
        if key.key_size != cfg.key_size:
            key = new_key(cfg.key_size)
        cert, ca = await self._scep(cfg, key)
        self.config = cfg
        d.enroll(key=key, cert=cert, ca_cert=cfg.ca_cert, topic=cfg.topic, server_url=cfg.server_url,
                 checkin_url=cfg.checkin_url, profile=cfg.profile)
        try:
            await self.checkin(d.authenticate_message(), stage="authenticate")
            await self.checkin(d.token_update_message(), stage="token_update")
        except SimulatorError:
            d.enrolled = False
            raise
        return d

    async def _scep(self, cfg: EnrollmentConfig, key) -> tuple[x509.Certificate, x509.Certificate]:
        url = cfg.scep_url
        caps = set((await self._request("scep", "GET", url, params={"operation": "GetCACaps"})).text.split())
        r = await self._request("scep", "GET", url, params={"operation": "GetCACert"})
        try:
            ca = pick_ca(r.content, cfg.ca_fingerprint)
        except ParseError as e:
            raise SimulatorError(e.message, stage="scep") from None
        builder = x509.CertificateSigningRequestBuilder().subject_name(cfg.subject)
        if cfg.challenge is not None:
            builder = builder.add_attribute(x509.oid.AttributeOID.CHALLENGE_PASSWORD, cfg.challenge.encode())
        csr = builder.sign(key, hashes.SHA256())
        cn = cfg.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        signer = self_signed(key, str(cn[0].value) if cn else self.device.serial)
        message, tx = build_request(key, csr, signer, key, ca, cipher="aes256" if "AES" in caps else "3des",
                                    digest="sha256" if "SHA-256" in caps else "sha1")
        if "POSTPKIOperation" in caps:
            r = await self._request("scep", "POST", url, params={"operation": "PKIOperation"}, content=message,
                                    headers={"Content-Type": PKI_MESSAGE_TYPE})
        else:
            r = await self._request("scep", "GET", url, params={
                "operation": "PKIOperation", "message": base64.b64encode(message).decode()})
        try:
            cert = parse_cert_rep(r.content, transaction_id=tx, recipient_key=key, recipient_cert=signer,
                                  ca_cert=ca, sender_nonce=request_sender_nonce(message))
        except MDMError as e:  # ScepRefused, ScepPending, ParseError
            raise SimulatorError(f"SCEP: {e}", stage="scep") from None
        return cert, ca

    async def checkin(self, body: bytes, *, stage: str = "checkin") -> bytes:
        """PUT a check-in message to the CheckInURL (signed)."""
        return await self._put_signed(stage, self.device.checkin_url, body, CHECKIN_TYPE)

    # -- connect -----------------------------------------------------------------------------
    async def connect_session(self) -> int:
        """Idle, then execute commands until the server answers with an empty body.

        Returns the number of commands executed.
        """
        d = self.device
        if not d.enrolled:
            raise SimulatorError(f"{d.serial} is not enrolled", stage="connect")
        d.begin_session()
        self.stats.sessions += 1
        body, cached, done = d.idle_report(), True, 0
        while True:
            reply = await self._put_report(d.server_url, body, cached)
            if not d.enrolled:  # erased: the wipe starts once the acknowledgement is out
                return done
            if not reply.strip():
                return done
            if done >= self.max_commands:
                raise SimulatorError(f"more than {self.max_commands} commands in one session", stage="connect")
            try:
                body, cached = d.handle_command(reply), False
            except MDMError as e:
                raise SimulatorError(f"server reply is not a command: {e.message}", stage="connect") from None
            done += 1

    async def _put_report(self, url: str, body: bytes, cached: bool) -> bytes:
        """PUT a report; like iOS, send the same report again when the server is unreachable or
        answers 5xx (so a result is never lost and a command never re-run because of it)."""
        delay = self.retry_backoff
        for attempt in range(self.report_retries + 1):
            try:
                return await self._put_signed("connect", url, body, CONNECT_TYPE, cached=cached)
            except SimulatorError as e:
                transient = e.status is None or e.status >= 500 or e.status == 429
                if not transient or attempt == self.report_retries:
                    raise
                self.stats.report_retries += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable")

    async def checkout(self) -> None:
        """Remove the MDM profile: CheckOut (CheckOutWhenRemoved), then forget the identity."""
        d = self.device
        if not d.enrolled:
            return
        await self.checkin(d.checkout_message(), stage="checkout")
        d.enrolled = False
