"""mdm.plist_xml against plistlib: on every document it reads, the same value; on every document
it does not, it steps aside (None) and plistlib decides. Generated plists in both writers' forms,
hand-made odd documents, and byte- and token-level mutations of real device reports."""

from __future__ import annotations

import datetime as dt
import math
import plistlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mdm import plist, plist_xml
from mdm.errors import LimitExceeded, ParseError
from tests.support.fixtures import fixture

DEPTH = 32

# what a plist writer accepts: no lone surrogates, no control characters but tab, LF and CR
_CONTROL = "".join(chr(i) for i in range(32) if chr(i) not in "\t\n\r")
_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters=_CONTROL), max_size=12)
_scalars = (_text | st.integers(-2**63, 2**64 - 1) | st.booleans()
            | st.floats(allow_nan=False) | st.binary(max_size=24)
            | st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2100, 1, 1)).map(
                lambda d: d.replace(microsecond=0)))
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(_text, inner, max_size=4), max_leaves=25)


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def plistlib_answer(data: bytes):
    try:
        return "value", plistlib.loads(data)
    except Exception as e:  # noqa: BLE001 - whatever plistlib raises
        return "error", type(e)


def check(data: bytes) -> None:
    """The reader's value is plistlib's; and mdm.plist.loads gives a value or its own errors."""
    try:
        mine = plist_xml.read(data, DEPTH)
    except LimitExceeded:
        mine = LimitExceeded
    kind, theirs = plistlib_answer(data)
    if mine is LimitExceeded:
        assert kind == "value", "refused for depth what plistlib cannot read"
    elif mine is not None:
        assert kind == "value", f"read a document plistlib refuses ({theirs})"
        assert same(mine, theirs), (mine, theirs)
    try:
        plist.loads(data)
    except (ParseError, LimitExceeded):
        pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_values)
def test_generated_plists_read_as_plistlib_reads_them(value):
    for data in (plistlib.dumps(value), plistlib.dumps(value, sort_keys=False), plist.dumps(value)):
        check(data)
    data = plist.dumps(value)
    if not any(odd in data for odd in (b"<date>", b"&#", b"\r", "\ufffe".encode(), "\uffff".encode())):
        assert plist_xml.read(data, DEPTH) is not None, "the plain form must be the reader's"


def test_device_reports_are_read_by_the_reader():
    for name in ("Idle", "Acknowledged-DeviceInformation", "Acknowledged-ProfileList", "Error"):
        data = fixture("connect", name, udid="00008103-0001", serial="DMP000001", command_uuid="c-1")
        value = plist_xml.read(data, DEPTH)
        assert value is not None and same(value, plistlib.loads(data))


ODD = [
    b'<?xml version="1.0"?><plist version="1.0"><dict><key>a</key><string>x</string><!-- c --></dict></plist>',
    b'<plist version="1.0"><string><![CDATA[<x>]]></string></plist>',
    b'<plist version="1.0"><string>a&#10;b</string></plist>',
    b'<plist version="1.0"><string>a\r\nb</string></plist>',
    b'<plist version="1.0"><string>a&nbsp;b</string></plist>',
    b'<plist version="1.0"><string>a &amp;lt; b &lt; c</string></plist>',
    b'<plist version="1.0"><dict><key>a</key></dict></plist>',
    b'<plist version="1.0"><dict><key></key></dict></plist>',
    b'<plist version="1.0"><dict><string>x</string></dict></plist>',
    b'<plist version="1.0"><array><key>a</key></array></plist>',
    b'<plist version="1.0"><dict><key>a</key><key>b</key><true/></dict></plist>',
    b'<plist version="1.0"><dict><key></key><key>b</key><true/></dict></plist>',
    b'<plist version="1.0"><array></dict></plist>',
    b'<plist version="1.0"><array><true></true></array></plist>',
    b'<plist version="1.0"><integer>0x1F</integer></plist>',
    b'<plist version="1.0"><integer> 12 </integer></plist>',
    b'<plist version="1.0"><integer>1_000</integer></plist>',
    b'<plist version="1.0"><integer>x</integer></plist>',
    b'<plist version="1.0"><real>nan</real></plist>',
    b'<plist version="1.0"><data>AAE=</data></plist>',
    b'<plist version="1.0"><data>AAE</data></plist>',
    b'<plist version="1.0"><data>!!AA!E=</data></plist>',
    b'<plist version="1.0"><date>2026-11-25T10:00:00Z</date></plist>',
    b'<plist version="1.0"><string>a</string><string>b</string></plist>',
    b'<plist version="1.0"><string>a</string>junk</plist>',
    b'<plist version="1.0"></plist>',
    b'<plist version="1.0"><dict/></plist>  \n',
    b'<plist version="1.0"><dict/></plist>x',
    b'<plist version="1.0"><dict/></plist><plist version="1.0"><dict/></plist>',
    b'<plist version="1.0"><String>a</String></plist>',
    b'<plist version="1.0"><string a="1">a</string></plist>',
    b'<plist version="1.0"><unknown>a</unknown></plist>',
    b'<plist version="1.0"><string>\xff</string></plist>',
    b'<plist version="1.0"><string>\xef\xbf\xbe</string></plist>',
    b'<plist version="1.0"><string>a]]>b</string></plist>',
    b'<plist version="1.0"><string>a>b</string></plist>',
    b'\xef\xbb\xbf<plist version="1.0"><string>bom</string></plist>',
    b'<?xml version="1.0" encoding="ISO-8859-1"?><plist version="1.0"><string>\xe9</string></plist>',
    b'<plist version="2.0"><string>v</string></plist>',
    b'<plist><string>no version</string></plist>',
    b'  <plist version="1.0"><string>leading space</string></plist>',
]


@pytest.mark.parametrize("data", ODD, ids=range(len(ODD)))
def test_odd_documents(data):
    check(data)


def test_depth_is_limited_as_loads_limits_it():
    deep = b"<array>" * 40 + b"</array>" * 40
    data = b'<plist version="1.0">' + deep + b"</plist>"
    with pytest.raises(LimitExceeded):
        plist_xml.read(data, DEPTH)
    with pytest.raises(LimitExceeded):
        plist.loads(data)
    def nested(n: int) -> bytes:
        return b'<plist version="1.0">' + b"<array>" * n + b"</array>" * n + b"</plist>"

    assert plist_xml.read(nested(DEPTH), DEPTH) == plistlib.loads(nested(DEPTH))
    for n in (DEPTH + 1, DEPTH + 8):
        with pytest.raises(LimitExceeded):
            plist_xml.read(nested(n), DEPTH)


_REPORT = fixture("connect", "Acknowledged-DeviceInformation", udid="00008103-0001", serial="DMP000001",
                  command_uuid="c-1")
_PIECES = [b"<", b">", b"/", b"&", b"&amp;", b"&lt;", b"<key>", b"</key>", b"<dict>", b"</dict>", b"<array>",
           b"</array>", b"<true/>", b"<string>", b"</string>", b"<integer>", b"</integer>", b" ", b"\n", b"\r",
           b"\x00", b"\x01", b"]]>", b"<!--", b"-->", b"<date>", b"\xc3\xa9", b"\xff", b"0x", b"="]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(_REPORT)), st.integers(0, 12), st.sampled_from(_PIECES)),
                min_size=1, max_size=4))
def test_mutated_reports(edits):
    data = _REPORT
    for at, drop, piece in edits:
        at = min(at, len(data))
        data = data[:at] + piece + data[at + drop:]
    check(data)
