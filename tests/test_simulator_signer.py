"""The simulator's template signer (simulator.signer) against mdm.signature's reference."""

from __future__ import annotations

import base64
import datetime as dt

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from mdm import pki
from mdm.signature import SignatureVerifier, sign_detached
from simulator.signer import DetachedSigner, der, der_integer

UTC = dt.timezone.utc


@pytest.fixture(scope="module")
def ident():
    ca = pki.create_ca("Signer Test CA", "Test City Schools")
    return ca, pki.issue_identity(ca, "SIGNER0001", key=pki.new_key())


@pytest.mark.parametrize("when", [dt.datetime(2026, 3, 1, 7, 5, 9, 999_999, tzinfo=UTC),
                                  dt.datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC),
                                  dt.datetime(2050, 1, 1, 0, 0, 0, tzinfo=UTC)])
@pytest.mark.parametrize("size", [0, 1, 127, 128, 300, 70_000])
def test_byte_identical_to_sign_detached(ident, when, size):
    _, device = ident
    body = bytes(range(256)) * (size // 256) + bytes(size % 256)
    fast = DetachedSigner(device.cert, device.key).sign(body, signing_time=when)
    assert fast == sign_detached(body, device.cert, device.key, signing_time=when)


def test_verifies_with_the_servers_verifier_and_uses_the_clock(ident):
    ca, device = ident
    fixed = dt.datetime(2026, 5, 4, 3, 2, 1, tzinfo=UTC)
    signer = DetachedSigner(device.cert, device.key, clock=lambda: fixed)
    body = b"<plist>Idle</plist>"
    header = signer.sign(body)
    assert SignatureVerifier([ca.cert]).verify(header, body).cert == device.cert
    assert header == sign_detached(body, device.cert, device.key, signing_time=fixed)
    with pytest.raises(Exception):
        SignatureVerifier([ca.cert]).verify(header, body + b"x")


def test_der_integers_and_long_lengths():
    assert der_integer(0) == b"\x02\x01\x00"
    assert der_integer(127) == b"\x02\x01\x7f"
    assert der_integer(128) == b"\x02\x02\x00\x80"  # stays positive
    assert der_integer(2**159) == b"\x02\x15\x00\x80" + bytes(19)
    assert der(0x04, bytes(200))[:3] == b"\x04\x81\xc8"
    assert der(0x04, bytes(70_000))[:5] == b"\x04\x83\x01\x11\x70"


def test_whole_value_is_one_der_sequence(ident):
    _, device = ident
    value = base64.b64decode(DetachedSigner(device.cert, device.key).sign(b"x"))
    assert value[:2] == b"\x30\x82" and len(value) == 4 + int.from_bytes(value[2:4], "big")


def test_refuses_non_rsa_keys(ident):
    _, device = ident
    with pytest.raises(TypeError):
        DetachedSigner(device.cert, ec.generate_private_key(ec.SECP256R1()))
