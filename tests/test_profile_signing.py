"""Profile signing (profiles.signing) and EncryptedPayloadContent (profiles.encryption)."""

from __future__ import annotations

import datetime as dt
import plistlib
import shutil
import subprocess

import pytest
from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mdm import pki
from mdm.errors import ParseError, ValidationFailed
from profiles.encryption import (
    decrypt_payload_content,
    decrypt_profile,
    encrypt_payload_content,
    encrypt_profile,
)
from profiles.signing import sign_profile, unsign_profile, verify_profile

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")

PROFILE = {
    "PayloadType": "Configuration",
    "PayloadVersion": 1,
    "PayloadIdentifier": "org.example.schools.wifi",
    "PayloadUUID": "8C1B0E5A-4C1D-4F0E-9B1A-2D3C4E5F6A7B",
    "PayloadDisplayName": "Schul-WLAN \u00e4\u00f6\u00fc",
    "PayloadContent": [
        {
            "PayloadType": "com.apple.wifi.managed",
            "PayloadVersion": 1,
            "PayloadIdentifier": "org.example.schools.wifi.1",
            "PayloadUUID": "1F2E3D4C-5B6A-4978-8695-A4B3C2D1E0F9",
            "SSID_STR": "Schule",
            "EncryptionType": "WPA2",
            "Password": "s3cret\nwith newline",
        }
    ],
}
PLIST = plistlib.dumps(PROFILE)


@pytest.fixture(scope="module")
def ca() -> pki.Identity:
    return pki.create_ca("schoolmdm Root CA", "Test City Schools")


@pytest.fixture(scope="module")
def signer(ca) -> pki.Identity:
    return pki.issue_signing_identity(ca, "Test City Schools")


@pytest.fixture(scope="module")
def device(ca) -> pki.Identity:
    return pki.issue_identity(ca, "ipad-1", eku=[ExtendedKeyUsageOID.CLIENT_AUTH])


@pytest.fixture(scope="module")
def signed(signer) -> bytes:
    return sign_profile(PLIST, signer)


def _tamper(der: bytes) -> bytes:
    i = der.index(b"Schule")
    return der[:i] + b"Schulf" + der[i + 6 :]


# --- signing ------------------------------------------------------------------------


def test_sign_and_unsign_round_trip_is_byte_exact(signed, signer, ca):
    content, certs = unsign_profile(signed)
    assert content == PLIST
    assert certs[0] == signer.cert
    assert ca.cert in certs


def test_signed_profile_is_der_signed_data_with_sha256(signed):
    info = cms.ContentInfo.load(signed)
    assert info["content_type"].native == "signed_data"
    sd = info["content"]
    assert sd["encap_content_info"]["content"].native == PLIST
    assert sd["signer_infos"][0]["digest_algorithm"]["algorithm"].native == "sha256"
    assert info.dump(force=True) == signed  # canonical DER


def test_verify_profile_against_ca(signed, ca):
    assert verify_profile(signed, ca.cert) == PLIST


def test_verify_profile_through_an_intermediate(ca):
    inter_key = pki.new_key()
    now = dt.datetime.now(dt.timezone.utc)
    inter_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Intermediate")]))
        .issuer_name(ca.cert.subject)
        .public_key(inter_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca.key, hashes.SHA256())
    )
    inter = pki.Identity(inter_cert, inter_key, (ca.cert,))
    leaf = pki.issue_signing_identity(inter, "Test")
    chained = pki.Identity(leaf.cert, leaf.key, (inter.cert, ca.cert))
    assert verify_profile(sign_profile(PLIST, chained), ca.cert) == PLIST
    unchained = pki.Identity(leaf.cert, leaf.key, ())
    with pytest.raises(ParseError, match="does not chain"):
        verify_profile(sign_profile(PLIST, unchained), ca.cert)


def test_verify_profile_rejects_other_ca(signed):
    other = pki.create_ca("Other Root", "Elsewhere")
    with pytest.raises(ParseError, match="does not chain"):
        verify_profile(signed, other.cert)


def test_verify_profile_rejects_expired_signer(signed, signer, ca):
    later = signer.cert.not_valid_after_utc + dt.timedelta(days=1)
    with pytest.raises(ParseError, match="expired"):
        verify_profile(signed, ca.cert, clock=lambda: later)


def test_the_chain_is_walked_once_but_dates_and_signatures_are_checked_every_time(signed, signer, ca):
    from profiles import signing

    assert verify_profile(signed, ca.cert) == PLIST
    assert any(ders[0] == signer.cert.public_bytes(serialization.Encoding.DER) for ders, _ in signing._CHAINS)
    later = signer.cert.not_valid_after_utc + dt.timedelta(days=1)
    with pytest.raises(ParseError, match="profile signer certificate has expired"):
        verify_profile(signed, ca.cert, clock=lambda: later)
    other = pki.create_ca("Other Root", "Elsewhere")
    for _ in range(2):  # a chain that failed fails again
        with pytest.raises(ParseError, match="does not chain"):
            verify_profile(signed, other.cert)
    tampered = signed.replace(PLIST[-40:], PLIST[-40:].replace(b"<", b"("), 1)
    with pytest.raises(ParseError):
        verify_profile(tampered, ca.cert)
    assert verify_profile(signed, ca.cert) == PLIST


def test_tampered_profile_is_rejected(signed, ca):
    with pytest.raises(ParseError, match="digest mismatch"):
        unsign_profile(_tamper(signed))
    with pytest.raises(ParseError):
        verify_profile(_tamper(signed), ca.cert)


@pytest.mark.parametrize("data", [b"", b"garbage", PLIST, b"\x30\x03\x02\x01\x01"])
def test_unsign_garbage(data):
    with pytest.raises(ParseError):
        unsign_profile(data)


def test_unsign_truncated(signed):
    for cut in (1, 50, len(signed) // 2, len(signed) - 1):
        with pytest.raises(ParseError):
            unsign_profile(signed[:cut])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pos=st.integers(min_value=0), value=st.integers(0, 255), cut=st.integers(min_value=0))
def test_fuzz_unsign_only_raises_parse_error(signed, ca, pos, value, cut):
    der = bytearray(signed)
    der[pos % len(der)] = value
    der = bytes(der[: len(der) - cut % 3])
    try:
        content = verify_profile(der, ca.cert)
    except ParseError:
        return
    assert content == PLIST


@needs_openssl
def test_openssl_verifies_signed_profile_and_rejects_tampered(tmp_path, signed, ca):
    ca_pem = tmp_path / "ca.pem"
    ca_pem.write_bytes(ca.cert_pem())
    good, bad, out = tmp_path / "p.mobileconfig", tmp_path / "bad.mobileconfig", tmp_path / "out.plist"
    good.write_bytes(signed)
    bad.write_bytes(_tamper(signed))
    cmd = ["openssl", "cms", "-verify", "-inform", "DER", "-CAfile", str(ca_pem), "-binary", "-out", str(out)]
    ok = subprocess.run([*cmd, "-in", str(good)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert out.read_bytes() == PLIST
    rejected = subprocess.run([*cmd, "-in", str(bad)], capture_output=True, text=True)
    assert rejected.returncode != 0
    other = pki.create_ca("Other Root", "Elsewhere")
    ca_pem.write_bytes(other.cert_pem())
    assert subprocess.run([*cmd, "-in", str(good)], capture_output=True).returncode != 0


# --- EncryptedPayloadContent ----------------------------------------------------------


@pytest.mark.parametrize("bits", [128, 256])
def test_encrypt_decrypt_round_trip(device, bits):
    data = plistlib.dumps(PROFILE["PayloadContent"])
    der = encrypt_payload_content(data, device.cert, aes_bits=bits)
    info = cms.ContentInfo.load(der)
    assert info["content_type"].native == "enveloped_data"
    alg = info["content"]["encrypted_content_info"]["content_encryption_algorithm"]["algorithm"].native
    assert alg == f"aes{bits}_cbc"
    assert data not in der
    assert decrypt_payload_content(der, device.key, device.cert) == data


def test_decrypt_for_another_device_fails(device, ca):
    other = pki.issue_identity(ca, "ipad-2")
    der = encrypt_payload_content(b"secret", device.cert)
    with pytest.raises(ParseError):
        decrypt_payload_content(der, other.key, other.cert)
    with pytest.raises(ParseError):
        decrypt_payload_content(b"not cms", device.key, device.cert)


def test_encrypt_profile_moves_payload_content(device):
    original = {**PROFILE, "PayloadContent": [dict(p) for p in PROFILE["PayloadContent"]]}
    enc = encrypt_profile(original, device.cert)
    assert original == PROFILE  # input left untouched
    assert "PayloadContent" not in enc
    assert isinstance(enc["EncryptedPayloadContent"], bytes)
    assert {k: v for k, v in enc.items() if k != "EncryptedPayloadContent"} == {
        k: v for k, v in PROFILE.items() if k != "PayloadContent"
    }
    xml = plistlib.dumps(enc)
    assert b"<key>EncryptedPayloadContent</key>\n\t<data>" in xml
    assert b"Password" not in xml and b"s3cret" not in xml
    assert decrypt_profile(plistlib.loads(xml), device.key, device.cert) == PROFILE


def test_encrypted_profile_signs_and_round_trips(device, signer, ca):
    signed = sign_profile(plistlib.dumps(encrypt_profile(PROFILE, device.cert)), signer)
    profile = plistlib.loads(verify_profile(signed, ca.cert))
    assert decrypt_profile(profile, device.key, device.cert) == PROFILE


def test_encrypt_profile_needs_payload_content(device):
    with pytest.raises(ValidationFailed):
        encrypt_profile({"PayloadType": "Configuration"}, device.cert)
    with pytest.raises(ValidationFailed):
        encrypt_profile({"PayloadContent": [], "EncryptedPayloadContent": b""}, device.cert)
    with pytest.raises(ParseError):
        decrypt_profile(PROFILE, device.key, device.cert)


def test_decrypt_profile_rejects_non_array(device):
    blob = encrypt_payload_content(plistlib.dumps({"not": "an array"}), device.cert)
    with pytest.raises(ParseError, match="array"):
        decrypt_profile({"EncryptedPayloadContent": blob}, device.key, device.cert)


@needs_openssl
def test_openssl_decrypts_encrypted_payload_content(tmp_path, device):
    data = plistlib.dumps(PROFILE["PayloadContent"], fmt=plistlib.FMT_XML)
    enc, cert, key = tmp_path / "enc.der", tmp_path / "dev.pem", tmp_path / "dev.key"
    enc.write_bytes(encrypt_payload_content(data, device.cert))
    cert.write_bytes(device.cert_pem())
    key.write_bytes(device.key_pem())
    key.chmod(0o600)
    out = subprocess.run(
        ["openssl", "cms", "-decrypt", "-binary", "-inform", "DER", "-in", str(enc),
         "-recip", str(cert), "-inkey", str(key)],
        capture_output=True,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == data
