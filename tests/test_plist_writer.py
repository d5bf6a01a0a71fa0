"""mdm.plist.dumps writes exactly what plistlib.dumps(obj, fmt=FMT_XML, sort_keys=True) writes.

Random nested structures of every type plistlib writes (and some it refuses), plus the
profiles of the example city: same bytes, or the same exception type.
"""

from __future__ import annotations

import datetime as dt
import enum
import plistlib
from collections import OrderedDict
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mdm import plist
from mdm.pki import create_ca, new_key
from profiles.blueprint.loader import load_city
from profiles.issuer import CAIssuer
from profiles.profile import _stable_bytes, build_school, content_hash, stable_view

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "city"


def reference(obj) -> bytes:
    return plistlib.dumps(obj, fmt=plistlib.FMT_XML, sort_keys=True)


def outcome(dumps, obj):
    try:
        return "ok", dumps(obj)
    except Exception as e:  # the comparison is of the exception type
        return "error", type(e)


def same(obj) -> None:
    assert outcome(plist.dumps, obj) == outcome(reference, obj)


class Text(str):
    pass


class Number(enum.IntEnum):
    ONE = 1
    BIG = 1 << 63


class Real(float):
    def __repr__(self) -> str:
        return "<real & odd>"


# Text leaning on what matters: markup characters, line ends, Latin-1 and astral characters;
# "refused" adds what plistlib refuses (control characters, lone surrogates).
MARKUP = "&<>\r\n\t äÖß·€Łş😀"
REFUSED = "\x00\x01\x0b\x1f\ud800\udfff"
texts = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cc",)), max_size=20),
    st.text(alphabet=st.sampled_from("abcXYZ019 ./-_:" + MARKUP), max_size=30),
    st.text(alphabet=st.sampled_from("abcdefghijklmnop.-"), max_size=30),
)
refused_texts = st.text(alphabet=st.sampled_from("abc&<" + REFUSED), min_size=1, max_size=6)
plain_keys = st.text(alphabet=st.sampled_from("abcdefgPQRSTUVWXYZ_0123"), min_size=1, max_size=12)
keys = st.one_of(plain_keys, plain_keys, texts)
scalars = st.one_of(
    texts,
    st.booleans(),
    st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.binary(max_size=200),
    st.binary(min_size=1, max_size=40).map(lambda b: b * (6000 // len(b))),  # long: several wrapping blocks
    st.binary(max_size=100).map(bytearray),
    st.datetimes(min_value=dt.datetime(1, 1, 1), timezones=st.none() | st.just(dt.timezone.utc)),
)
unusual = st.one_of(
    refused_texts,
    st.integers(min_value=-(1 << 70), max_value=1 << 70),
    texts.map(Text),
    st.sampled_from(list(Number)),
    st.floats(allow_nan=False).map(Real),
    st.just(None),
    st.just(b"x").map(memoryview),
    st.dates(),
)


def containers(children):
    return st.one_of(
        st.lists(children, max_size=6),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(keys, children, max_size=8),
    )


def unusual_containers(children):
    return st.one_of(
        containers(children),
        st.dictionaries(refused_texts, children, max_size=2),
        st.dictionaries(plain_keys, children, max_size=4).map(lambda d: OrderedDict(sorted(d.items()))),
        st.dictionaries(st.one_of(plain_keys, st.integers()), children, max_size=3),
    )


values = st.recursive(scalars, containers, max_leaves=40)
values_with_unusual = st.recursive(scalars | unusual, unusual_containers, max_leaves=25)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
@example({})
@example([])
@example({"a": {}, "b": [], "c": b"", "d": ""})
@example({"k": "a & b < c > d \r\n e \r f"})
@example({"a&b": 1, "a<": 2, "a\rA": 3, "a\nB": 4})  # escaping a key does not change the order
@example({"x": "\x00"})
@example({"\x01": "x"})
@example({"x": "\ud800"})
@example({"\udfff": 1})
@example([1 << 64, -(1 << 63) - 1])
@example([(1 << 64) - 1, -(1 << 63), float("nan"), float("-inf"), 1e300, -0.0])
@example({"t": True, "f": False, "i": 0, "ä": "Schüler*innen · Łukasz 😀"})
def test_same_bytes_as_plistlib(obj):
    same(obj)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values_with_unusual)
def test_subclasses_and_refused_types_as_plistlib(obj):
    same(obj)


def test_unusual_examples():
    same({"big": 1 << 64})
    same({"small": -(1 << 63) - 1, "ok": 1})
    same({"a": Text("x & y"), "b": Number.ONE, "c": Real(1.5), "d": OrderedDict(z=1, a=2)})
    same({Text("k"): 1, "j": 2})
    same({"big": Number.BIG})
    same({"d": dt.date(2024, 1, 1)})
    same({1: "a", 2: "b"})
    same({1: "a", "b": 2})


def test_cached_shapes_do_not_leak_between_values():
    # same keys, different value types and escaping needs, one after the other
    for obj in ({"a": 1, "b": "x"}, {"a": "y&", "b": [1]}, {"b": {}, "a": b"\x00" * 100},
                {"a": None, "b": 1}, {"a": 1, "b": "x"}):
        same(obj)


@pytest.mark.parametrize("depth", [1, 3, 8, 9, 45, 70])
def test_data_wrapping_and_deep_nesting(depth):
    obj: object = {"blob": bytes(range(256)) * 40, "small": b"abc", "s": "x"}
    for i in range(depth):
        obj = {"level": obj, "n": i} if i % 2 else [obj, b"\xff" * (i * 7)]
    same(obj)


def test_profiles_of_the_example_city():
    city = load_city(EXAMPLES)
    issuer = CAIssuer(create_ca("Writer Test CA", "Test City"), key=new_key())
    n = 0
    for school in city.schools:
        for role in ("pupil", "teacher"):
            build = build_school(city, school, role, issuer=issuer)
            for p in build.profiles + ([build.exam] if build.exam else []):
                assert p.plist == reference(p.payload)
                n += 1
    assert n > 20


def test_profile_with_escapes_and_wide_characters():
    city = load_city(EXAMPLES)
    issuer = CAIssuer(create_ca("Writer Test CA", "Test City"), key=new_key())
    payload = build_school(city, "gy-schiller", "teacher", issuer=issuer).profile("wifi").payload
    payload = {**payload, "PayloadDisplayName": "WLAN & Proxy <Łódź> \r\n 😀",
               "PayloadContent": [{**item, "Password": "p&ss<w>rd"} for item in payload["PayloadContent"]]}
    same(payload)


# --- the content hash, cut out of the written profile -------------------------------------------------

PKCS12 = "com.apple.security.pkcs12"
header = st.fixed_dictionaries({"PayloadType": st.sampled_from([PKCS12, "com.apple.wifi.managed"]),
                                "PayloadUUID": plain_keys})
issued_payloads = st.fixed_dictionaries(
    {"PayloadType": st.just(PKCS12), "PayloadContent": st.binary(max_size=300) | st.binary(max_size=50).map(bytearray),
     "Password": texts, "PayloadDisplayName": texts},
    optional={"Zzz": values, "AAA": values, "PayloadCertificateFileName": texts})
odd_issued = st.fixed_dictionaries({"PayloadType": st.just(PKCS12)},  # what the cut leaves to the slow path
                                   optional={"PayloadContent": values, "Password": values})
other_payloads = st.builds(lambda h, rest: {**rest, **h}, header, st.dictionaries(keys, values, max_size=4))
nested = st.builds(lambda inner, h: {**h, "PayloadType": "com.apple.wifi.managed", "Inner": inner, "List": [inner]},
                   issued_payloads, header)
items = st.one_of(issued_payloads, issued_payloads, issued_payloads, other_payloads, nested, odd_issued, texts)
profiles_ = st.builds(
    lambda content, top, extra: {**extra, **top, **({} if content is None else {"PayloadContent": content})},
    st.none() | st.lists(items, max_size=5) | st.lists(items, max_size=3).map(tuple),
    st.fixed_dictionaries({"PayloadType": st.just("Configuration"), "PayloadIdentifier": texts}),
    st.dictionaries(keys, values | st.lists(issued_payloads, max_size=2) | issued_payloads, max_size=3),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(profiles_)
def test_hash_from_the_written_bytes_is_the_hash_of_the_stable_view(profile):
    try:
        written = plist.dumps(profile)
    except (ValueError, UnicodeEncodeError):  # a refused string: no profile to hash
        return
    cut = _stable_bytes(profile, written)
    if cut is not None:
        assert cut == plist.dumps(stable_view(profile))
    assert content_hash(profile, written) == content_hash(profile)
    content = profile.get("PayloadContent")
    if type(content) in (list, tuple) and all(
            type(i.get("PayloadContent")) in (bytes, bytearray) and type(i.get("Password")) is str
            for i in content if isinstance(i, dict) and i.get("PayloadType") == PKCS12):
        assert cut is not None  # the usual profile: no second serialization


def test_built_profiles_hash_without_a_second_serialization():
    city = load_city(EXAMPLES)
    issuer = CAIssuer(create_ca("Writer Test CA", "Test City"), key=new_key())
    builds = [build_school(city, s, r, issuer=issuer) for s in city.schools for r in ("pupil", "teacher")]
    for p in (p for b in builds for p in b.profiles):
        cut = _stable_bytes(p.payload, p.plist)
        assert cut is not None and cut == plist.dumps(stable_view(p.payload))
        assert p.content_hash == content_hash(p.payload)
        if p.name == "classroom":
            assert cut != p.plist  # the identity is blanked
