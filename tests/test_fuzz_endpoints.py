"""Fuzzing every device endpoint through the real HTTP application.

``PUT /mdm/checkin`` and ``/mdm/connect``, ``GET /scep`` (every operation) and ``POST /scep``
PKIOperation, ``GET /enroll/{school}`` and ``POST /enroll/ade/{school}`` get random bodies,
mutated real messages, and (the part that reaches the parsers and services behind
authentication) mutated bodies *correctly signed* by an enrolled test iPad: mutated
check-ins, reports on commands really sent to it with odd results, and PKIMessages whose
envelope or CSR is mutated behind a valid signature.

Every answer must be below 500 (the test client re-raises any uncaught exception), every
refusal must be the JSON error body, and a refused request must change nothing: the whole
database is compared before and after (``snapshot``). After an accepted result the device's
API pages must still render.
"""

from __future__ import annotations

import base64
import functools
import plistlib
from urllib.parse import quote

import pytest
from asn1crypto import core
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, assume, given
from hypothesis import settings as budget
from hypothesis import strategies as st

from mdm import pki
from mdm.checkin import build_checkin
from mdm.commands import build_report, new_command
from mdm.scep import build_request, make_csr, self_signed
from mdm.scep import cms as scep_cms
from mdm.scep import envelope
from mdm.signature import sign_detached
from tests.conftest import ADMIN_TOKEN
from tests.support.device import CHECKIN_TYPE, CONNECT_TYPE, TestDevice, pooled_key
from tests.support.fixtures import FIXTURES, fixture, snapshot
from tests.support.mutation import (
    apply_byte_edits, apply_der_edits, apply_plist_edits, byte_edits, der_edits, encode_plist, odd_text,
    odd_values, plist_edits,
)

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning"),
]

BUDGETS = [pytest.param(1, id="fast"), pytest.param(4, id="slow", marks=pytest.mark.slow)]


def explore(scale: int, n: int, **strategies):
    def run(check):
        budget(max_examples=n * scale, deadline=None, derandomize=True, database=None, print_blob=True,
               suppress_health_check=list(HealthCheck))(given(**strategies)(check))()
    return run


@pytest.fixture
def settings(settings):
    """A fuzzer sends hundreds of requests for one device and one token: rate limits off."""
    return settings.model_copy(update={"device_rate_per_second": 0.0, "token_rate_per_second": 0.0})


class Rig:
    """The application, a school, an enrolled iPad that signs whatever the fuzzer makes, and the checks."""

    SNAPSHOT_EVERY = 3  # the whole database is compared around every third refusal

    def __init__(self, client, container, school) -> None:
        self.http, self.c, self.school = client, container, school
        self.api = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        self.device = TestDevice(client).enroll(school["id"], school["token"])
        self.refusals = 0
        self.statuses: dict[int, int] = {}

    # --- the device
    def ensure_enrolled(self) -> TestDevice:
        """A mutated check-in that still parses may re-authenticate or check the iPad out: enroll anew."""
        auth = self.c.checkin_store.device_auth(self.device.udid)
        if auth is None or auth.enrollment_state != "enrolled" or auth.cert_fingerprint != pki.fingerprint(
                self.device.cert):
            self.device = TestDevice(self.http, key=self.device.key).enroll(self.school["id"], self.school["token"])
        return self.device

    def values(self) -> dict[str, str]:
        d = self.device
        return {"udid": d.udid, "topic": d.topic, "serial": d.serial}

    def sent_command(self, request_type: str = "DeviceInformation", params: dict | None = None, *,
                     item_key: str | None = None) -> str:
        """Queue a command for the iPad and fetch it, so that a report on it is expected. With
        ``item_key`` it is a blueprint item, as blueprint pushes queue them."""
        d = self.ensure_enrolled()
        while (r := d.connect("Idle")).content:  # drain what earlier examples left
            d.connect("Acknowledged", d.command_of(r)[0])
        if item_key is None:
            r = self.http.post("/api/v1/commands", headers=self.api, json={
                "request_type": request_type, "params": params or {}, "devices": [d.udid]})
            assert r.status_code == 202, r.text
            cu = r.json()["command_uuid"]
        else:
            cmd = new_command(request_type, params)
            self.c.queue.enqueue(command_uuid=cmd.command_uuid, request_type=request_type, body=cmd.to_plist(),
                                 udids=[d.udid], now=self.c.clock(), item_key=item_key, item_hash="fuzz")
            cu = cmd.command_uuid
        r = d.connect("Idle")
        assert r.status_code == 200 and d.command_of(r)[0] == cu, r.text
        return cu

    # --- requests and checks
    def send(self, method: str, url: str, *, compare: bool | None = None, **kw):
        """One request: never a 5xx; a refusal is the JSON error body and (sampled) changes nothing."""
        if compare is None:
            compare = self.refusals % self.SNAPSHOT_EVERY == 0
        before = snapshot(self.c.engine) if compare else None
        r = self.http.request(method, url, **kw)
        self.statuses[r.status_code] = self.statuses.get(r.status_code, 0) + 1
        assert r.status_code < 500, (method, url, r.status_code, r.text[:500])
        if r.status_code >= 400:
            self.refusals += 1
            err = r.json()["error"]
            assert isinstance(err["code"], str) and isinstance(err["message"], str)
            if before is not None:
                assert snapshot(self.c.engine) == before, (method, url, r.status_code, r.text[:300])
        return r

    def signed(self, path: str, body: bytes, *, content_type: str, compare: bool | None = None):
        d = self.device
        headers = {"Mdm-Signature": sign_detached(body, d.cert, d.key), "Content-Type": content_type}
        return self.send("PUT", path, content=body, headers=headers, compare=compare)

    def device_pages_render(self) -> None:
        """What a device sent must not break the pages that show it."""
        for url in (f"/api/v1/devices/{self.device.udid}", "/api/v1/devices?limit=5", "/api/v1/jobs?limit=5",
                    "/api/v1/loans?limit=5"):
            r = self.http.get(url, headers=self.api)
            assert r.status_code == 200, (url, r.status_code, r.text[:300])


@pytest.fixture
def rig(client, container, school):
    return Rig(client, container, school)


def _bodies(kind: str) -> list[str]:
    return sorted(p.stem for p in (FIXTURES / kind).glob("*.plist"))


CHECKINS, REPORTS = _bodies("checkin"), _bodies("connect")
COMMAND_UUID = "6F8E2D1C-0000-4A4A-9999-0123456789AB"

printable_headers = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=300)
signatures = st.one_of(
    st.none(), printable_headers, st.binary(max_size=600).map(lambda b: base64.b64encode(b).decode()),
    st.sampled_from(["", " ", "====", "A" * 70_000]),
)


# --- /mdm/checkin and /mdm/connect ----------------------------------------------------------------


@pytest.mark.parametrize("scale", BUDGETS)
def test_unsigned_and_badly_signed_device_requests_are_refused(rig, scale):
    """Without a valid signature nothing is parsed and nothing changes: 401 (413 if too large)."""
    @explore(scale, 60, path=st.sampled_from(["/mdm/checkin", "/mdm/connect"]),
             name=st.sampled_from([("checkin", n) for n in CHECKINS] + [("connect", n) for n in REPORTS]),
             edits=plist_edits, signature=signatures, tamper=st.booleans())
    def check(path, name, edits, signature, tamper):
        body = fixture(*name, command_uuid=COMMAND_UUID, **rig.values())
        headers = {"Content-Type": CHECKIN_TYPE if path.endswith("checkin") else CONNECT_TYPE}
        if tamper:  # a real signature, over the body before the mutation
            signature = sign_detached(body, rig.device.cert, rig.device.key)
            mutated = apply_plist_edits(body, edits)
            assume(mutated != body)
            body = mutated
        if signature is not None:
            headers["Mdm-Signature"] = signature
        r = rig.send("PUT", path, content=body, headers=headers, compare=True)
        assert r.status_code in (401, 413), r.text


@functools.cache
def stranger() -> tuple:
    """A certificate from another CA, and a self-signed one: they sign perfectly and are refused."""
    key = pooled_key()
    other = pki.create_ca("Evil CA", "Evil", key=key)
    return (pki.issue_identity(other, "evil-ipad", key=key), self_signed(key, "ipad-self"), key)


@pytest.mark.parametrize("scale", BUDGETS)
def test_signed_by_strangers_is_refused(rig, scale):
    @explore(scale, 20, path=st.sampled_from(["/mdm/checkin", "/mdm/connect"]), which=st.sampled_from([0, 1]),
             digest=st.sampled_from(["sha1", "sha256"]))
    def check(path, which, digest):
        evil, self_cert, key = stranger()
        cert = evil.cert if which == 0 else self_cert
        d = rig.device
        body = d.authenticate_body() if path.endswith("checkin") else build_report(d.udid, "Idle")
        r = rig.send("PUT", path, content=body, compare=True, headers={
            "Mdm-Signature": sign_detached(body, cert, key, digest=digest), "Content-Type": CONNECT_TYPE})
        assert r.status_code == 401


CHECKIN_KEYS = ["UDID", "Topic", "SerialNumber", "DeviceName", "OSVersion", "BuildVersion", "ProductName",
                "ModelName", "Token", "PushMagic", "UnlockToken", "MessageType", "AwaitingConfiguration",
                "EnrollmentID", "UserID", "IMEI", "MEID", "NotOnConsole"]
field_edits = st.lists(st.tuples(st.one_of(st.sampled_from(CHECKIN_KEYS), odd_text),
                                 st.one_of(st.none(), odd_text, odd_values)), min_size=1, max_size=4)


def checkin_dict(d: TestDevice, message_type: str) -> dict:
    """A real check-in of this iPad as a dict."""
    if message_type == "Authenticate":
        return plistlib.loads(d.authenticate_body())
    if message_type == "TokenUpdate":
        return plistlib.loads(d.token_update_body())
    return plistlib.loads(build_checkin("CheckOut", d.udid, Topic=d.topic))


def _edited(base: dict, edits) -> dict:
    out = dict(base)
    for key, value in edits:
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


@pytest.mark.parametrize("scale", BUDGETS)
def test_signed_mutated_checkins(rig, scale):
    """Signed by the enrolled iPad, so every mutation reaches the plist and check-in parsers and,
    when it still parses, the check-in service and the database."""
    @explore(scale, 60, case=st.one_of(
        st.tuples(st.just("text"), st.sampled_from(CHECKINS), plist_edits, st.just(False)),
        st.tuples(st.just("dict"), st.sampled_from(["Authenticate", "TokenUpdate", "CheckOut"]), field_edits,
                  st.booleans())))
    def check(case):
        kind, name, edits, binary = case
        d = rig.ensure_enrolled()
        if kind == "text":
            body = apply_plist_edits(fixture("checkin", name, **rig.values()), edits)
        else:
            body = encode_plist(_edited(checkin_dict(d, name), edits), binary)
            assume(body is not None)
        r = rig.signed("/mdm/checkin", body, content_type=CHECKIN_TYPE)
        if r.status_code == 200:
            rig.device_pages_render()

    assert rig.statuses.get(200) and rig.statuses.get(400)  # past authentication: accepted and refused


def report_dicts(rig: Rig, cu: str):
    d = rig.device
    bases = [plistlib.loads(fixture("connect", n, command_uuid=cu, udid=d.udid, serial=d.serial)) for n in REPORTS]
    keys = st.sampled_from(["UDID", "Status", "CommandUUID", "ErrorChain", "QueryResponses", "ProfileList",
                            "InstalledApplicationList", "Identifier", "EnrollmentID", "UserID", "RequestType"])
    edits = st.lists(st.tuples(st.one_of(keys, odd_text), st.one_of(st.none(), odd_values)), min_size=1, max_size=4)
    return st.tuples(st.sampled_from(bases), edits, st.booleans()).map(lambda t: (_edited(t[0], t[1]), t[2]))


@pytest.mark.parametrize("scale", BUDGETS)
def test_signed_mutated_reports(rig, scale):
    """Reports on a command really sent to the iPad, mutated as text or field by field, signed."""
    @explore(scale, 50, case=st.one_of(
        st.tuples(st.just("text"), st.sampled_from(REPORTS), plist_edits),
        st.tuples(st.just("dict"), st.just(""), st.data())))
    def check(case):
        cu = rig.sent_command()
        d = rig.device
        if case[0] == "text":
            body = apply_plist_edits(fixture("connect", case[1], command_uuid=cu, udid=d.udid, serial=d.serial),
                                     case[2])
        else:
            doc, binary = case[2].draw(report_dicts(rig, cu))
            body = encode_plist(doc, binary)
            assume(body is not None)
        r = rig.signed("/mdm/connect", body, content_type=CONNECT_TYPE)
        if r.status_code == 200:
            rig.device_pages_render()

    assert rig.statuses.get(200) and rig.statuses.get(400)


def _result_keys(request_type: str):
    """Odd result documents for what ResultHandler reads from each kind of report."""
    ident = st.one_of(odd_text, st.sampled_from(["com.example.app", "de.musterstadt.wifi"]), odd_values)
    item = st.fixed_dictionaries({}, optional={
        "PayloadIdentifier": ident, "PayloadUUID": odd_values, "PayloadDisplayName": odd_values,
        "Identifier": ident, "Name": odd_values, "ShortVersion": odd_values, "Version": odd_values,
        "IsManaged": odd_values})
    items = st.one_of(st.lists(st.one_of(item, odd_values), max_size=6),
                      item.flatmap(lambda i: st.just([i, i, i])), odd_values)  # duplicates, wrong types
    answers = st.dictionaries(st.sampled_from(["DeviceName", "OSVersion", "BuildVersion", "ProductName",
                                               "ModelName", "SerialNumber", "BatteryLevel", "UDID", "WiFiMAC"]),
                              odd_values, max_size=6)
    return {
        "DeviceInformation": st.fixed_dictionaries({"QueryResponses": st.one_of(answers, odd_values)}),
        "ProfileList": st.fixed_dictionaries({"ProfileList": items}),
        "InstalledApplicationList": st.fixed_dictionaries({"InstalledApplicationList": items}),
        "InstallApplication": st.fixed_dictionaries({}, optional={"Identifier": ident, "State": odd_values}),
        "RemoveProfile": st.dictionaries(odd_text, odd_values, max_size=3),
        "RemoveApplication": st.dictionaries(odd_text, odd_values, max_size=3),
        "SecurityInfo": st.fixed_dictionaries({"SecurityInfo": odd_values}),
    }[request_type]


COMMAND_PARAMS = {"RemoveProfile": {"Identifier": "de.musterstadt.wifi"},
                  "RemoveApplication": {"Identifier": "com.example.app"}, "InstallApplication": {"iTunesStoreID": 1}}


@pytest.mark.parametrize("scale", BUDGETS)
def test_signed_odd_results_and_error_chains(rig, scale):
    """Acknowledged results with odd values (long, NaN, huge, wrong types, duplicate identifiers)
    and Error reports with odd chains: stored or refused, never a 5xx; the device's pages render."""
    types = ["DeviceInformation", "ProfileList", "InstalledApplicationList", "InstallApplication", "RemoveProfile",
             "RemoveApplication", "SecurityInfo"]
    rig.http.post("/api/v1/webhooks", headers=rig.api, json={  # events carry error chains
        "name": "fuzz", "url": "https://127.0.0.1:9/hook", "events": ["*"]})

    @explore(scale, 60, request_type=st.sampled_from(types), data=st.data(), binary=st.booleans(),
             status=st.sampled_from(["Acknowledged", "Acknowledged", "Error", "CommandFormatError", "NotNow"]))
    def check(request_type, data, binary, status):
        item = data.draw(st.sampled_from([None, "app:fuzz"])) if request_type == "InstallApplication" else None
        cu = rig.sent_command(request_type, COMMAND_PARAMS.get(request_type), item_key=item)
        if status == "Acknowledged":
            result = data.draw(_result_keys(request_type))
        else:
            result = {"ErrorChain": data.draw(st.one_of(st.lists(odd_values, max_size=3), odd_values))}
        doc = {"UDID": rig.device.udid, "Status": status, "CommandUUID": cu, **result}
        body = encode_plist(doc, binary)
        assume(body is not None)
        rig.signed("/mdm/connect", body, content_type=CONNECT_TYPE)
        rig.device_pages_render()
        assert rig.http.get(f"/api/v1/commands/{cu}", headers=rig.api).status_code == 200


LONGER_THAN_STORED = {"SerialNumber": 65, "ProductName": 65, "ModelName": 65, "OSVersion": 33, "BuildVersion": 33,
                      "DeviceName": 201, "IMEI": 65, "MEID": 65, "Topic": 256, "PushMagic": 256}


@pytest.mark.parametrize("message_type", ["Authenticate", "TokenUpdate"])
def test_signed_checkins_with_values_longer_than_stored(rig, message_type):
    """Each field one character longer than the database keeps (PostgreSQL refuses, SQLite would not)."""
    for key, n in LONGER_THAN_STORED.items():
        d = rig.ensure_enrolled()
        r = rig.signed("/mdm/checkin", encode_plist({**checkin_dict(d, message_type), key: "A" * n}, False),
                       content_type=CHECKIN_TYPE, compare=True)
        reads = key in ("Topic", "PushMagic") if message_type == "TokenUpdate" else key != "PushMagic"
        assert r.status_code == (400 if reads else 200), (key, r.text)


def test_signed_results_with_values_longer_than_stored(rig):
    """Results naming things longer than the database keeps, and the same identifier twice: stored
    as far as they fit, never a 5xx."""
    long = "L" * 300
    cases = [
        ("DeviceInformation", None, {"QueryResponses": {k: long for k in (
            "DeviceName", "OSVersion", "BuildVersion", "ProductName", "ModelName", "SerialNumber")}}),
        ("ProfileList", None, {"ProfileList": [
            {"PayloadIdentifier": long}, {"PayloadIdentifier": "de.a", "PayloadUUID": long, "PayloadDisplayName": long},
            {"PayloadIdentifier": "de.a"}, {"PayloadIdentifier": "de.b", "PayloadUUID": 7}]}),
        ("InstalledApplicationList", None, {"InstalledApplicationList": [
            {"Identifier": long}, {"Identifier": "com.a", "Name": long, "ShortVersion": long},
            {"Identifier": "com.a"}]}),
        ("InstallApplication", None, {"Identifier": long}),
        ("InstallApplication", "app:fuzz", {"Identifier": long}),
    ]
    for request_type, item, result in cases:
        cu = rig.sent_command(request_type, COMMAND_PARAMS.get(request_type), item_key=item)
        r = rig.signed("/mdm/connect", encode_plist({"UDID": rig.device.udid, "Status": "Acknowledged",
                                                     "CommandUUID": cu, **result}, False),
                       content_type=CONNECT_TYPE)
        assert r.status_code == 200, (request_type, r.text)
        rig.device_pages_render()
    page = rig.http.get(f"/api/v1/devices/{rig.device.udid}", headers=rig.api).json()
    assert [p["identifier"] for p in page["profiles"]] == ["de.a", "de.b"]
    assert page["name"] != long


# --- /scep ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", BUDGETS)
def test_scep_get_operations(rig, scale):
    @explore(scale, 60, operation=st.one_of(
        st.sampled_from(["GetCACaps", "GetCACert", "PKIOperation", "getcacaps", "GETCACERT", "GetNextCACert", ""]),
        printable_headers.map(lambda s: s[:40])),
        message=st.one_of(st.none(), printable_headers, st.binary(max_size=500).map(
            lambda b: base64.b64encode(b).decode())))
    def check(operation, message):
        params = {"operation": operation}
        if message is not None:
            params["message"] = message
        r = rig.send("GET", "/scep", params=params)
        if r.status_code == 200 and operation.lower() == "pkioperation":
            assert r.headers["content-type"] == "application/x-pki-message"


def scep_request(rig: Rig, *, challenge: str | None, key=None, subject: x509.Name | None = None,
                 cipher: str = "aes256", digest: str = "sha256") -> bytes:
    """A PKCSReq for the server's CA, the way an iPad builds it."""
    key = key or rig.device.key
    ca = rig.c.pki.ca.cert
    if subject is None:
        csr = make_csr(key, "ipad-fuzz", challenge)
    else:
        b = x509.CertificateSigningRequestBuilder().subject_name(subject)
        if challenge is not None:
            from cryptography.x509.oid import AttributeOID

            b = b.add_attribute(AttributeOID.CHALLENGE_PASSWORD, challenge.encode())
        csr = b.sign(key, hashes.SHA256())
    signer_key = key if isinstance(key, rsa.RSAPrivateKey) else rig.device.key
    signer = self_signed(signer_key, "ipad-fuzz")
    if not isinstance(key, rsa.RSAPrivateKey) or csr.public_key() != signer_key.public_key():
        content = envelope.encrypt(csr.public_bytes(serialization.Encoding.DER), ca, cipher)
        return resigned(content, signer, signer_key)
    return build_request(key, csr, signer, key, ca, cipher=cipher, digest=digest)[0]


def resigned(content: bytes, signer, key, message_type: str = "19") -> bytes:
    attrs = [scep_cms.attr(scep_cms.OID_MESSAGE_TYPE, scep_cms.printable(message_type)),
             scep_cms.attr(scep_cms.OID_TRANSACTION_ID, scep_cms.printable("fuzz-transaction")),
             scep_cms.attr(scep_cms.OID_SENDER_NONCE, core.OctetString(b"n" * 16))]
    return scep_cms.signed_data(content, signer, key, attrs)


def scep_status(body: bytes) -> str:
    sd = scep_cms.load_signed_data(body)
    return scep_cms.string_attr(scep_cms.signed_attributes(sd["signer_infos"][0]), scep_cms.OID_PKI_STATUS)


def post_scep(rig: Rig, body: bytes, *, via_get: bool = False, compare: bool | None = None):
    """A PKIOperation: a refusal is an HTTP 4xx or a FAILURE CertRep, and changes nothing."""
    before = snapshot(rig.c.engine) if compare else None
    if via_get:
        r = rig.send("GET", "/scep", params={"operation": "PKIOperation", "message": base64.b64encode(body).decode()},
                     compare=False)
    else:
        r = rig.send("POST", "/scep?operation=PKIOperation", content=body, compare=False,
                     headers={"Content-Type": "application/x-pki-message"})
    status = scep_status(r.content) if r.status_code == 200 else None
    if before is not None and status != "0":
        assert snapshot(rig.c.engine) == before, (r.status_code, status)
    return r, status


@pytest.mark.parametrize("scale", BUDGETS)
def test_scep_random_and_mutated_messages(rig, scale):
    @explore(scale, 50, source=st.sampled_from(["random", "der", "bytes"]), raw=st.binary(max_size=1500),
             edits=der_edits, bedits=byte_edits, via_get=st.booleans(), real_challenge=st.booleans())
    def check(source, raw, edits, bedits, via_get, real_challenge):
        challenge = rig.c.enrollment.new_challenge(rig.school["id"], None) if real_challenge else "wrong"
        if source == "random":
            body = raw or b"\x30"
        else:
            msg = scep_request(rig, challenge=challenge)
            body = apply_der_edits(msg, edits) if source == "der" else apply_byte_edits(msg, bedits)
        post_scep(rig, body, via_get=via_get, compare=True)


def _subjects():
    attr = st.tuples(st.sampled_from([NameOID.COMMON_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME,
                                      NameOID.ORGANIZATION_NAME, NameOID.SERIAL_NUMBER, NameOID.USER_ID]),
                     st.one_of(odd_text.filter(bool), st.text(min_size=1, max_size=64)))
    return st.lists(attr, min_size=0, max_size=30).map(
        lambda attrs: x509.Name([x509.NameAttribute(o, v.replace("\0", "?") or "x", _validate=False)
                                 for o, v in attrs]))


@functools.cache
def small_keys() -> tuple:
    return rsa.generate_private_key(65537, 1024), ec.generate_private_key(ec.SECP256R1())


@pytest.mark.parametrize("scale", BUDGETS)
def test_scep_validly_signed_odd_requests(rig, scale):
    """Behind a valid signature and a real challenge: odd subjects, weak or EC keys, mutated
    envelopes and CSRs, other message types. A SUCCESS issues a certificate; anything else is a
    FAILURE CertRep that changes nothing (the one-time challenge included)."""
    outcomes: dict[str, int] = {}

    @explore(scale, 40, layer=st.sampled_from(["subject", "key", "envelope", "csr", "type"]), subject=_subjects(),
             edits=der_edits, which_key=st.sampled_from([0, 1]),
             message_type=st.sampled_from(["17", "20", "21", "3", "", "x" * 40]),
             cipher=st.sampled_from(["aes128", "aes256", "3des", "des"]))
    def check(layer, subject, edits, which_key, message_type, cipher):
        challenge = rig.c.enrollment.new_challenge(rig.school["id"], None)
        d = rig.device
        signer = self_signed(d.key, "ipad-fuzz")
        if layer == "subject":
            try:
                body = scep_request(rig, challenge=challenge, subject=subject, cipher=cipher)
            except ValueError:  # a name cryptography will not encode
                assume(False)
        elif layer == "key":
            body = scep_request(rig, challenge=challenge, key=small_keys()[which_key], cipher=cipher)
        else:
            csr = make_csr(d.key, "ipad-fuzz", challenge).public_bytes(serialization.Encoding.DER)
            if layer == "csr":
                csr = apply_der_edits(csr, edits)
            content = envelope.encrypt(csr, rig.c.pki.ca.cert, cipher)
            if layer == "envelope":
                content = apply_der_edits(content, edits)
            body = resigned(content, signer, d.key, message_type if layer == "type" else "19")
        r, status = post_scep(rig, body, compare=True)
        assert r.status_code == 200 and status in ("0", "2"), (r.status_code, r.text[:200])
        outcomes[status] = outcomes.get(status, 0) + 1

    assert outcomes.get("0") and outcomes.get("2")  # certificates issued, and refusals


def test_scep_refusals_before_the_challenge_is_spent(rig):
    """A subject longer than the certificate record keeps, a weak key, an EC key: FAILURE, and the
    one-time challenge still works afterwards."""
    challenge = rig.c.enrollment.new_challenge(rig.school["id"], None)
    long_subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, f"unit-{i}-" + "u" * 50)
                              for i in range(12)] + [x509.NameAttribute(NameOID.COMMON_NAME, "ipad")])
    for body in (scep_request(rig, challenge=challenge, subject=long_subject),
                 scep_request(rig, challenge=challenge, key=small_keys()[0]),
                 scep_request(rig, challenge=challenge, key=small_keys()[1])):
        assert post_scep(rig, body, compare=True)[1] == "2"
    assert post_scep(rig, scep_request(rig, challenge=challenge))[1] == "0"


# --- /enroll --------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", BUDGETS)
def test_enroll(rig, scale):
    @explore(scale, 60, school=st.one_of(st.none(), st.none(), odd_text.filter(bool)),
             token=st.one_of(st.none(), st.just("REAL"), st.just("REAL"), odd_text),
             serial=st.one_of(st.none(), st.from_regex(r"[A-Z0-9]{8,12}", fullmatch=True), odd_text))
    def check(school, token, serial):
        school_id = rig.school["id"] if school is None else school
        params = {}
        if token is not None:
            params["token"] = rig.school["token"] if token == "REAL" else token
        if serial is not None:
            params["serial"] = serial
        r = rig.send("GET", f"/enroll/{quote(school_id, safe='')}", params=params)
        if r.status_code == 200:
            assert school is None and token == "REAL"
            assert r.headers["content-type"].startswith("application/x-apple-aspen-config")

    assert rig.statuses.get(200) and rig.statuses.get(403)


@pytest.mark.parametrize("scale", BUDGETS)
def test_enroll_ade(rig, scale):
    @explore(scale, 40, school=st.one_of(st.just(None), odd_text.filter(bool)),
             body=st.one_of(st.binary(max_size=800), st.sampled_from(CHECKINS).map(
                 lambda n: fixture("checkin", n)), st.tuples(st.sampled_from(REPORTS), plist_edits).map(
                 lambda t: apply_plist_edits(fixture("connect", t[0]), t[1]))))
    def check(school, body):
        school_id = rig.school["id"] if school is None else school
        rig.send("POST", f"/enroll/ade/{quote(school_id, safe='')}", content=body,
                 headers={"Content-Type": "application/pkcs7-signature"})
