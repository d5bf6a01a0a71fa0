"""Fuzzing the parsers that read bytes off the network: plists, ``Mdm-Signature`` (CMS) and SCEP.

Whatever comes in, each may only answer with a parsed value or refuse with its own error:
``mdm.plist.loads`` with ParseError/LimitExceeded, the check-in and report parsers and the
SCEP server with an MDMError, the signature verifier with CertAuthError. Inputs are random
bytes, random plist-token soups, hand-made binary plists (shared and cyclic references, odd
keys and object types), and structure-aware mutations of real messages: the check-in and
report fixtures, iPad-style Mdm-Signatures, and PKCSReq messages (also re-signed, so the
mutation reaches the envelope and the CSR behind a valid signature).

Each test runs a fast deterministic budget; the ``slow`` variant explores many more inputs.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import math
import plistlib
import struct

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mdm import pki, plist
from mdm.checkin import CheckinMessage, parse_checkin
from mdm.commands import Report, parse_report
from mdm.errors import CertAuthError, LimitExceeded, MDMError, ParseError
from mdm.scep import (
    FailInfo, ScepRefused, ScepRequest, build_request, handle_pki_operation, make_csr, parse_pki_message,
    self_signed,
)
from mdm.scep import cms as scep_cms
from mdm.scep import envelope
from mdm.signature import SignatureVerifier, parse_signed_data, sign_detached
from tests.support.device import pooled_key
from tests.support.fixtures import FIXTURES, fixture
from tests.support.mutation import (
    apply_byte_edits, apply_der_edits, apply_plist_edits, byte_edits, der_edits, plist_edits,
)

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),  # cryptography on odd certificate names
    pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning"),
]


def _budget(n: int) -> settings:
    return settings(max_examples=n, deadline=None, derandomize=True, database=None, print_blob=True,
                    suppress_health_check=list(HealthCheck))


BUDGETS = [pytest.param(1, id="fast"), pytest.param(6, id="slow", marks=pytest.mark.slow)]


def explore(scale: int, n: int, *strategies):
    """Run ``check`` over ``n * scale`` generated inputs (decorator, runs at once)."""
    def run(check):
        _budget(n * scale)(given(*strategies)(check))()
    return run


# --- plist ----------------------------------------------------------------------------------------

PLIST_TYPES = (dict, list, str, bytes, int, float, bool, dt.datetime)


def assert_plist_value(obj, max_depth: int = plist.DEFAULT_MAX_DEPTH) -> None:
    """What loads may return: plist types only, string keys, no NUL, within the depth limit."""
    stack = [(obj, 1)]
    while stack:
        cur, d = stack.pop()
        assert d <= max_depth
        assert isinstance(cur, PLIST_TYPES), type(cur)
        if isinstance(cur, dict):
            assert all(type(k) is str and "\0" not in k for k in cur)
            stack.extend((v, d + 1) for v in cur.values())
        elif isinstance(cur, list):
            stack.extend((v, d + 1) for v in cur)
        elif isinstance(cur, str):
            assert "\0" not in cur


def loads_or_refuses(data: bytes, **kw):
    try:
        value = plist.loads(data, **kw)
    except (ParseError, LimitExceeded):
        return None
    assert_plist_value(value, kw.get("max_depth", plist.DEFAULT_MAX_DEPTH))
    return value


class Ref:
    """A reference to object ``index`` of a hand-made binary plist (shared or cyclic)."""

    def __init__(self, index: int) -> None:
        self.index = index


def bplist(top, *, extra: list | None = None) -> bytes:
    """A binary plist written by hand, so it can say what plistlib.dumps refuses: any key
    type, None, UIDs, raw references (shared, cyclic, dangling), any integer width."""
    objects: list = []

    def add(value) -> int:
        if isinstance(value, Ref):
            return value.index
        i = len(objects)
        objects.append(None)
        if isinstance(value, dict):
            keys = [add(k) for k in value]
            vals = [add(v) for v in value.values()]
            objects[i] = _marker(0xD0, len(keys)) + _refs(keys + vals)
        elif isinstance(value, (list, tuple)):
            refs = [add(v) for v in value]
            objects[i] = _marker(0xA0, len(refs)) + _refs(refs)
        else:
            objects[i] = _scalar(value)
        return i

    add(top)
    for value in extra or ():
        add(value)
    out = bytearray(b"bplist00")
    offsets = []
    for o in objects:
        offsets.append(len(out))
        out += o
    table = len(out)
    for off in offsets:
        out += struct.pack(">I", off)
    out += struct.pack(">6xBBQQQ", 4, 2, len(objects), 0, table)
    return bytes(out)


def _refs(indexes: list[int]) -> bytes:
    return b"".join(struct.pack(">H", i % 65536) for i in indexes)


def _marker(high: int, n: int) -> bytes:
    if n < 15:
        return bytes([high | n])
    return bytes([high | 0xF, 0x12]) + struct.pack(">I", n)


def _scalar(v) -> bytes:
    if v is None:
        return b"\x00"
    if v is False:
        return b"\x08"
    if v is True:
        return b"\x09"
    if isinstance(v, plistlib.UID):
        return b"\x80" + bytes([v.data % 256])
    if isinstance(v, int):
        if 0 <= v < 1 << 63:
            return b"\x13" + struct.pack(">q", v)
        return b"\x14" + v.to_bytes(16, "big", signed=True) if -(1 << 127) <= v < 1 << 127 else b"\x17" + b"\x00" * 8
    if isinstance(v, float):
        return b"\x23" + struct.pack(">d", v)
    if isinstance(v, dt.datetime):
        return b"\x33" + struct.pack(">d", (v - dt.datetime(2001, 1, 1)).total_seconds())
    if isinstance(v, bytes):
        return _marker(0x40, len(v)) + v
    if isinstance(v, str):
        if v.isascii():
            return _marker(0x50, len(v)) + v.encode("ascii")
        raw = v.encode("utf-16-be", "surrogatepass")
        return _marker(0x60, len(raw) // 2) + raw
    raise TypeError(type(v))


odd_strings = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", "\0", "a\0b", "A" * 300, "\u202e", "😀" * 20, "Status", "UDID", "Idle"]),
    st.text(st.characters(codec="utf-8"), max_size=20),
)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(1 << 70), 1 << 70), st.floats(allow_nan=True, allow_infinity=True),
    odd_strings, st.binary(max_size=40), st.datetimes(dt.datetime(1, 1, 1), dt.datetime(9999, 1, 1)),
    st.builds(plistlib.UID, st.integers(0, 255)), st.builds(Ref, st.integers(0, 40)),
)
odd_keys = st.one_of(odd_strings, st.integers(-5, 5), st.none(), st.binary(max_size=4), st.booleans(),
                     st.builds(Ref, st.integers(0, 40)))
odd_trees = st.recursive(scalars, lambda kids: st.one_of(
    st.lists(kids, max_size=5), st.dictionaries(odd_keys, kids, max_size=5)), max_leaves=25)


@pytest.mark.parametrize("scale", BUDGETS)
def test_plist_random_bytes(scale):
    @explore(scale, 200, st.one_of(st.binary(max_size=600), st.binary(max_size=40).map(lambda b: b"bplist00" + b),
                                   st.binary(max_size=200).map(lambda b: b"<?xml version='1.0'?><plist>" + b)))
    def check(data):
        loads_or_refuses(data)


plist_tokens = st.lists(st.one_of(
    st.sampled_from([b"<plist>", b"</plist>", b"<dict>", b"</dict>", b"<array>", b"</array>", b"<key>k</key>",
                     b"<string>s</string>", b"<integer>1</integer>", b"<real>0.5</real>", b"<true/>", b"<false/>",
                     b"<data>AAEC</data>", b"<date>2024-01-01T00:00:00Z</date>", b"<dict/>", b"<array/>"]),
    st.text(max_size=10).map(str.encode)), max_size=40)


@pytest.mark.parametrize("scale", BUDGETS)
def test_plist_token_soup(scale):
    @explore(scale, 150, plist_tokens)
    def check(tokens):
        loads_or_refuses(b'<?xml version="1.0" encoding="UTF-8"?>\n<plist version="1.0">' + b"".join(tokens)
                         + b"</plist>")


def _fixtures() -> list[tuple[str, str, bytes]]:
    values = {"udid": "00008103-0123456789ABCDEF", "topic": "com.apple.mgmt.External.0f5c",
              "serial": "DMPXK2ABCD12", "command_uuid": "6F8E2D1C-0000-4A4A-9999-0123456789AB"}
    return [(p.parent.name, p.stem, fixture(p.parent.name, p.stem, **values))
            for p in sorted(FIXTURES.glob("*/*.plist"))]


FIXTURE_BODIES = _fixtures()
mutated_fixtures = st.tuples(st.sampled_from(FIXTURE_BODIES), st.one_of(plist_edits, byte_edits.map(lambda e: [
    ("bytes", 0, b"", e)])))


def parse_message(kind: str, body: bytes):
    """A check-in or report parser's answer: a typed message or an MDMError, nothing else."""
    try:
        msg = parse_checkin(body) if kind == "checkin" else parse_report(body)
    except MDMError:
        return None
    if kind == "checkin":
        assert isinstance(msg, CheckinMessage) and isinstance(msg.udid, str) and 0 < len(msg.udid) <= 64
    else:
        assert isinstance(msg, Report) and isinstance(msg.udid, str) and msg.udid
    return msg


@pytest.mark.parametrize("scale", BUDGETS)
def test_plist_mutated_fixtures(scale):
    @explore(scale, 200, mutated_fixtures)
    def check(case):
        (kind, _name, body), edits = case
        data = apply_plist_edits(body, edits)
        loads_or_refuses(data)
        parse_message(kind, data)


@pytest.mark.parametrize("scale", BUDGETS)
def test_plist_mutated_binary_fixtures(scale):
    """The fixtures as binary plists, byte-mutated: plistlib's binary reader raises many types."""
    binaries = [(k, n, plistlib.dumps(plistlib.loads(b), fmt=plistlib.FMT_BINARY))
                for k, n, b in FIXTURE_BODIES if b"ENTITY" not in b]

    @explore(scale, 200, st.sampled_from(binaries), byte_edits)
    def check(case, edits):
        kind, _name, body = case
        data = apply_byte_edits(body, edits)
        loads_or_refuses(data)
        parse_message(kind, data)


@pytest.mark.parametrize("scale", BUDGETS)
def test_plist_hand_made_binary(scale):
    """Shared and cyclic references, non-string keys, None, UIDs, NUL, odd widths: refused or clean."""
    @explore(scale, 150, odd_trees, st.lists(scalars, max_size=3))
    def check(tree, extra):
        try:
            data = bplist(tree, extra=extra)
        except TypeError:
            return
        loads_or_refuses(data)
        parse_message("checkin", data)
        parse_message("report", data)


def test_plist_shared_references_cannot_expand():
    """200 bytes of binary plist naming one array from two places, 30 levels deep, would be
    a billion-value tree: refused without walking it."""
    n = 30
    body = bplist([Ref(1), Ref(1)], extra=[[Ref(i + 1), Ref(i + 1)] for i in range(1, n)] + [True])
    assert len(body) < 400
    with pytest.raises(LimitExceeded):
        plist.loads(body)
    with pytest.raises(LimitExceeded):  # a cycle, too
        plist.loads(bplist([Ref(0)]))


@pytest.mark.parametrize("value,error", [
    ({1: "x"}, ParseError), ({b"k": 1}, ParseError), ({"k": None}, ParseError), ([plistlib.UID(3)], ParseError),
    ({"UDID": "a\0b"}, ParseError), ({"a\0": 1}, ParseError),
])
def test_plist_binary_values_xml_cannot_say_are_refused(value, error):
    with pytest.raises(error):
        plist.loads(bplist(value))


@pytest.mark.parametrize("depth", [31, 32, 33, 1000, 100_000])
@pytest.mark.parametrize("fmt", ["xml", "binary"])
def test_plist_deep_nesting(depth, fmt):
    if fmt == "xml":
        data = (b'<?xml version="1.0"?><plist version="1.0">' + b"<array>" * depth + b"<true/>"
                + b"</array>" * depth + b"</plist>")
    else:
        if depth > 60_000:  # past what two-byte references can address
            return
        data = bplist([Ref(1)], extra=[[Ref(i + 2)] for i in range(depth - 1)] + [True])
    value = loads_or_refuses(data)
    assert (value is not None) == (depth + 1 <= plist.DEFAULT_MAX_DEPTH)


HUGE = [
    b"<integer>" + b"9" * 5000 + b"</integer>", b"<integer>-" + b"9" * 4000 + b"</integer>",
    b"<integer>18446744073709551616</integer>", b"<integer>1e3</integer>", b"<integer></integer>",
    b"<real>nan</real>", b"<real>inf</real>", b"<real>-1e400</real>", b"<real>0x1p3</real>", b"<real></real>",
    b"<date>9999-12-31T23:59:59Z</date>", b"<date>0001-01-01T00:00:00Z</date>", b"<date>2024-02-30T00:00:00Z</date>",
    b"<date></date>", b"<data>" + b"QUFB" * 200_000 + b"</data>", b"<data>====</data>", b"<data>\xff</data>",
    b"<string>" + b"x" * 1_500_000 + b"</string>", b"<string>&#0;</string>", b"<string>&#xD800;</string>",
    b"<string>&#x10FFFF;</string>", b"<string>&#1;</string>", b"<key>orphan</key>", b"<dict><key>a</key></dict>",
    b"<dict><string>a</string><true/></dict>", b"<dict><key>a</key><true/><key>a</key><false/></dict>",
    b"<array><key>k</key></array>", b"<true>x</true>", b"<plist><true/></plist>",
]


@pytest.mark.parametrize("inner", HUGE, ids=range(len(HUGE)))
def test_plist_huge_and_odd_values(inner):
    data = b'<?xml version="1.0" encoding="UTF-8"?>\n<plist version="1.0">' + inner + b"</plist>"
    value = loads_or_refuses(data)
    if isinstance(value, float) and math.isnan(value):
        assert b"nan" in inner
    # the same body past the size limit is refused before parsing
    with pytest.raises(LimitExceeded):
        plist.loads(data, max_bytes=len(data) - 1)


def test_plist_utf16_entity_expansion_is_refused():
    """The ENTITY pre-check reads bytes; a UTF-16 body hides it, and plistlib still refuses."""
    laughs = ('<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE plist [<!ENTITY a "aaaaaaaaaa">'
              '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><plist><string>&b;</string></plist>')
    for data in (laughs.encode("utf-16"), laughs.encode("utf-16-le"), b"\xef\xbb\xbf" + laughs.encode()):
        with pytest.raises(ParseError):
            plist.loads(data)


def test_plist_refuses_what_is_not_bytes():
    for value in ("<plist/>", None, 3, memoryview(b"x"), ["bplist00"]):
        with pytest.raises(ParseError):
            plist.loads(value)


# --- Mdm-Signature (CMS SignedData) -----------------------------------------------------------------

@functools.cache
def sig_world():
    ca = pki.create_ca("Fuzz Device CA", "schoolmdm fuzz", key=pooled_key())
    device = pki.issue_identity(ca, "ipad-fuzz", eku=[ExtendedKeyUsageOID.CLIENT_AUTH], key=pooled_key())
    return ca, device


@functools.cache
def real_signatures() -> list[tuple[bytes, bytes]]:
    """(body, DER) of signatures the way iPads make them: SHA-1 and SHA-256, with and without
    signed attributes."""
    _, device = sig_world()
    out = []
    for digest in ("sha1", "sha256"):
        for attrs in (True, False):
            body = fixture("connect", "Idle", udid="00008103-0123456789ABCDEF")
            out.append((body, base64.b64decode(sign_detached(body, device.cert, device.key, digest=digest,
                                                             signed_attrs=attrs))))
    return out


def verifier() -> SignatureVerifier:
    return SignatureVerifier([sig_world()[0].cert])


def verify_or_refuse(v: SignatureVerifier, header, body: bytes):
    try:
        return v.verify(header, body)
    except CertAuthError:
        return None


@pytest.mark.parametrize("scale", BUDGETS)
def test_signature_random_headers(scale):
    v = verifier()

    @explore(scale, 150, st.one_of(st.none(), st.text(max_size=200), st.binary(max_size=400).map(
        lambda b: base64.b64encode(b).decode())), st.binary(max_size=200))
    def check(header, body):
        assert verify_or_refuse(v, header, body) is None


@pytest.mark.parametrize("scale", BUDGETS)
def test_signature_random_der(scale):
    @explore(scale, 150, st.binary(max_size=600))
    def check(data):
        with pytest.raises(CertAuthError):
            parse_signed_data(data)


@pytest.mark.parametrize("scale", BUDGETS)
def test_signature_mutated_der(scale):
    """A mutated signature is refused, or verifies as the one real signer (never anyone else)."""
    v = verifier()
    _, device = sig_world()
    fp = pki.fingerprint(device.cert)

    @explore(scale, 150, st.integers(0, 3), der_edits)
    def check(which, edits):
        body, der = real_signatures()[which]
        signer = verify_or_refuse(v, base64.b64encode(apply_der_edits(der, edits)).decode(), body)
        assert signer is None or signer.fingerprint == fp
        try:
            parse_signed_data(apply_der_edits(der, edits))
        except CertAuthError:
            pass


@pytest.mark.parametrize("scale", BUDGETS)
def test_signature_does_not_cover_a_mutated_body(scale):
    v = verifier()

    @explore(scale, 80, st.integers(0, 3), plist_edits)
    def check(which, edits):
        body, der = real_signatures()[which]
        tampered = apply_plist_edits(body, edits)
        signer = verify_or_refuse(v, base64.b64encode(der).decode(), tampered)
        assert (signer is not None) == (tampered == body)


# --- SCEP -----------------------------------------------------------------------------------------

CHALLENGE = "fuzz-challenge"


@functools.cache
def scep_ca() -> pki.Identity:
    return pki.create_ca("Fuzz SCEP CA", "schoolmdm fuzz", key=pooled_key())


class Service:
    """Issues for the right challenge, like DeviceScepService without the database."""

    def ca(self) -> pki.Identity:
        return scep_ca()

    def issue(self, request: ScepRequest) -> x509.Certificate:
        if request.csr is None or request.challenge != CHALLENGE:
            raise ScepRefused("refused", FailInfo.badRequest)
        return pki.sign_csr(scep_ca(), request.csr, days=1)


@functools.cache
def scep_parts():
    key = pooled_key()
    signer = self_signed(key, "ipad-fuzz")
    csr = make_csr(key, "ipad-fuzz", CHALLENGE)
    requests = [build_request(key, csr, signer, key, scep_ca().cert, cipher=c, digest=d)[0]
                for c, d in (("aes256", "sha256"), ("3des", "sha1"), ("aes128", "sha512"))]
    return key, signer, csr.public_bytes(serialization.Encoding.DER), requests


def resign(content: bytes, message_type: str = "19") -> bytes:
    """A PKIMessage around ``content`` with a valid signature: mutations reach the envelope."""
    from asn1crypto import core

    key, signer, _, _ = scep_parts()
    attrs = [scep_cms.attr(scep_cms.OID_MESSAGE_TYPE, scep_cms.printable(message_type)),
             scep_cms.attr(scep_cms.OID_TRANSACTION_ID, scep_cms.printable("fuzz-transaction")),
             scep_cms.attr(scep_cms.OID_SENDER_NONCE, core.OctetString(b"n" * 16))]
    return scep_cms.signed_data(content, signer, key, attrs)


def answer(data: bytes):
    """handle_pki_operation's contract: a DER CertRep, or ParseError when no signed reply is possible."""
    try:
        reply = handle_pki_operation(data, Service())
    except ParseError:
        return None
    assert isinstance(reply, bytes)
    sd = scep_cms.load_signed_data(reply)
    status = scep_cms.string_attr(scep_cms.signed_attributes(sd["signer_infos"][0]), scep_cms.OID_PKI_STATUS)
    assert status in ("0", "2")  # SUCCESS or FAILURE
    return status


@pytest.mark.parametrize("scale", BUDGETS)
def test_scep_random_bytes(scale):
    @explore(scale, 150, st.binary(max_size=2000))
    def check(data):
        with pytest.raises(MDMError):
            parse_pki_message(data, scep_ca())
        answer(data)


@pytest.mark.parametrize("scale", BUDGETS)
def test_scep_mutated_requests(scale):
    @explore(scale, 100, st.integers(0, 2), st.one_of(der_edits, byte_edits.map(lambda e: [
        ("bytes", 0, 0, b"", e)])))
    def check(which, edits):
        data = apply_der_edits(scep_parts()[3][which], edits)
        try:
            assert isinstance(parse_pki_message(data, scep_ca()), ScepRequest)
        except MDMError:
            pass
        answer(data)


@pytest.mark.parametrize("scale", BUDGETS)
def test_scep_validly_signed_mutations_always_get_a_signed_reply(scale):
    """Behind a valid signature every problem (envelope, CSR, message type) is a CertRep."""
    @explore(scale, 60, st.sampled_from(["envelope", "csr", "type"]), der_edits,
             st.sampled_from(["19", "17", "20", "3", "", "x" * 300]))
    def check(layer, edits, message_type):
        _, _, csr, _ = scep_parts()
        if layer == "envelope":
            content = apply_der_edits(envelope.encrypt(csr, scep_ca().cert), edits)
        elif layer == "csr":
            content = envelope.encrypt(apply_der_edits(csr, edits), scep_ca().cert)
        else:
            content = envelope.encrypt(csr, scep_ca().cert)
        data = resign(content, message_type if layer == "type" else "19")
        assert answer(data) is not None
