"""Mdm-Signature verification (mdm.signature)."""

from __future__ import annotations

import base64
import datetime as dt
import shutil
import subprocess

import pytest
from asn1crypto import cms
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mdm import pki
from mdm.errors import CertAuthError
from mdm.signature import SignatureVerifier, VerifiedSigner, sign_detached

BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<plist version="1.0"><dict>'
    b"<key>MessageType</key><string>TokenUpdate</string>"
    b"<key>UDID</key><string>00008030-000A1B2C3D4E5F60</string></dict></plist>\n"
)
needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")


@pytest.fixture(scope="module")
def ca() -> pki.Identity:
    return pki.create_ca("schoolmdm Device CA", "Test City Schools")


@pytest.fixture(scope="module")
def device(ca) -> pki.Identity:
    return pki.issue_identity(ca, "ipad-1", eku=[ExtendedKeyUsageOID.CLIENT_AUTH], days=365)


@pytest.fixture(scope="module")
def device2(ca) -> pki.Identity:
    return pki.issue_identity(ca, "ipad-2", eku=[ExtendedKeyUsageOID.CLIENT_AUTH], days=365)


@pytest.fixture(scope="module")
def valid_header(device) -> str:
    return sign_detached(BODY, device.cert, device.key)


@pytest.fixture()
def verifier(ca) -> SignatureVerifier:
    return SignatureVerifier([ca.cert])


def clock_at(when: dt.datetime):
    return lambda: when


@pytest.mark.parametrize("digest", ["sha1", "sha256"])
@pytest.mark.parametrize("signed_attrs", [True, False])
def test_verifies_sha1_and_sha256_with_and_without_signed_attrs(verifier, device, digest, signed_attrs):
    header = sign_detached(BODY, device.cert, device.key, digest=digest, signed_attrs=signed_attrs)
    signer = verifier.verify(header, BODY)
    assert isinstance(signer, VerifiedSigner)
    assert signer.cert == device.cert
    assert signer.cert_der == device.cert_der
    assert signer.fingerprint == pki.fingerprint(device.cert)


@pytest.mark.parametrize("signed_attrs", [True, False])
def test_tampered_body_is_rejected(verifier, device, signed_attrs):
    header = sign_detached(BODY, device.cert, device.key, signed_attrs=signed_attrs)
    with pytest.raises(CertAuthError) as e:
        verifier.verify(header, BODY.replace(b"TokenUpdate", b"Authenticate"))
    assert ("digest mismatch" if signed_attrs else "invalid signature") in e.value.message


def _mutate_signer_info(header: str, **changes) -> str:
    info = cms.ContentInfo.load(base64.b64decode(header))
    si = info["content"]["signer_infos"][0]
    for k, v in changes.items():
        si[k] = v
    return base64.b64encode(info.dump(force=True)).decode()


@pytest.mark.parametrize("signed_attrs", [True, False])
def test_bad_signature_is_rejected(verifier, device, signed_attrs):
    header = sign_detached(BODY, device.cert, device.key, signed_attrs=signed_attrs)
    sig = bytearray(cms.ContentInfo.load(base64.b64decode(header))["content"]["signer_infos"][0]["signature"].native)
    sig[10] ^= 0x01
    with pytest.raises(CertAuthError, match="invalid signature"):
        verifier.verify(_mutate_signer_info(header, signature=bytes(sig)), BODY)


def test_signature_by_another_key_is_rejected(verifier, device, device2):
    # device2's key signs, but device's certificate is presented as the signer
    header = sign_detached(BODY, device.cert, device2.key)
    with pytest.raises(CertAuthError, match="invalid signature"):
        verifier.verify(header, BODY)


def test_cert_from_another_ca_is_rejected(verifier):
    rogue_ca = pki.create_ca("Rogue CA", "Elsewhere")
    rogue = pki.issue_identity(rogue_ca, "ipad-x", eku=[ExtendedKeyUsageOID.CLIENT_AUTH])
    with pytest.raises(CertAuthError, match="not issued by a trusted CA"):
        verifier.verify(sign_detached(BODY, rogue.cert, rogue.key), BODY)


def test_cert_from_impostor_ca_with_same_name_is_rejected(ca, verifier):
    impostor = pki.create_ca("schoolmdm Device CA", "Test City Schools")
    assert impostor.cert.subject == ca.cert.subject
    rogue = pki.issue_identity(impostor, "ipad-x", eku=[ExtendedKeyUsageOID.CLIENT_AUTH])
    with pytest.raises(CertAuthError, match="bad certificate signature"):
        verifier.verify(sign_detached(BODY, rogue.cert, rogue.key), BODY)


def test_any_of_several_cas_is_accepted(ca, device):
    other = pki.create_ca("Old Device CA", "Test City Schools")
    old_device = pki.issue_identity(other, "ipad-old")
    v = SignatureVerifier([other.cert, ca.cert])
    assert v.verify(sign_detached(BODY, device.cert, device.key), BODY).cert == device.cert
    assert v.verify(sign_detached(BODY, old_device.cert, old_device.key), BODY).cert == old_device.cert


def test_server_certificate_from_same_ca_is_not_a_device(ca, verifier):
    server = pki.issue_tls_server(ca, ["mdm.example.org"], [])
    with pytest.raises(CertAuthError, match="client authentication"):
        verifier.verify(sign_detached(BODY, server.cert, server.key), BODY)


def test_expired_and_not_yet_valid(ca, device, valid_header):
    after = device.cert.not_valid_after_utc + dt.timedelta(seconds=1)
    before = device.cert.not_valid_before_utc - dt.timedelta(seconds=1)
    with pytest.raises(CertAuthError, match="expired"):
        SignatureVerifier([ca.cert], clock=clock_at(after)).verify(valid_header, BODY)
    with pytest.raises(CertAuthError, match="not yet valid"):
        SignatureVerifier([ca.cert], clock=clock_at(before)).verify(valid_header, BODY)


def test_dates_are_checked_on_every_call_even_when_cached(ca, device, valid_header):
    now = [device.cert.not_valid_before_utc + dt.timedelta(days=1)]
    v = SignatureVerifier([ca.cert], clock=lambda: now[0])
    v.verify(valid_header, BODY)
    assert v.cached_certificates == 1
    now[0] = device.cert.not_valid_after_utc + dt.timedelta(days=1)
    with pytest.raises(CertAuthError, match="expired"):
        v.verify(valid_header, BODY)


def test_cache_is_per_certificate_and_bounded(ca, device, device2):
    v = SignatureVerifier([ca.cert], cache_size=1)
    h1 = sign_detached(BODY, device.cert, device.key)
    h2 = sign_detached(BODY, device2.cert, device2.key, digest="sha1")
    for _ in range(3):
        assert v.verify(h1, BODY).cert == device.cert
        assert v.cached_certificates == 1
        assert v.verify(h2, BODY).cert == device2.cert
        assert v.cached_certificates == 1
    big = SignatureVerifier([ca.cert])
    big.verify(h1, BODY)
    big.verify(sign_detached(b"other body", device.cert, device.key), b"other body")
    assert big.cached_certificates == 1
    big.verify(h2, BODY)
    assert big.cached_certificates == 2


def test_rejected_certificates_are_not_cached(verifier):
    rogue_ca = pki.create_ca("Rogue CA", "Elsewhere")
    rogue = pki.issue_identity(rogue_ca, "ipad-x")
    with pytest.raises(CertAuthError):
        verifier.verify(sign_detached(BODY, rogue.cert, rogue.key), BODY)
    assert verifier.cached_certificates == 0


@pytest.mark.parametrize("value", [None, "", "   "])
def test_missing_header(verifier, value):
    with pytest.raises(CertAuthError, match="missing|empty|base64"):
        verifier.verify(value, BODY)


@pytest.mark.parametrize("value", ["not base64!!", "abc", "YWJj\u00e9", "YW Jj"])
def test_garbage_base64(verifier, value):
    with pytest.raises(CertAuthError, match="base64"):
        verifier.verify(value, BODY)


def test_not_cms(verifier):
    with pytest.raises(CertAuthError, match="CMS"):
        verifier.verify(base64.b64encode(b"hello, this is not DER at all").decode(), BODY)
    with pytest.raises(CertAuthError, match="CMS"):
        verifier.verify(base64.b64encode(BODY).decode(), BODY)


def test_huge_header_is_refused(verifier):
    with pytest.raises(CertAuthError, match="too large"):
        verifier.verify("A" * 100_000, BODY)


@pytest.mark.parametrize("cut", [1, 2, 10, 100, 500, -300, -1])
def test_truncated_cms(verifier, valid_header, cut):
    der = base64.b64decode(valid_header)
    with pytest.raises(CertAuthError):
        verifier.verify(base64.b64encode(der[:cut]).decode(), BODY)


def test_other_cms_types_are_rejected(verifier, device):
    enveloped = pkcs7.PKCS7EnvelopeBuilder().set_data(BODY).add_recipient(device.cert).encrypt(
        serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary]
    )
    with pytest.raises(CertAuthError, match="not SignedData"):
        verifier.verify(base64.b64encode(enveloped).decode(), BODY)


def test_missing_signer_certificate(verifier, device):
    der = pkcs7.PKCS7SignatureBuilder().set_data(BODY).add_signer(device.cert, device.key, hashes.SHA256()).sign(
        serialization.Encoding.DER, [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.NoCerts]
    )
    with pytest.raises(CertAuthError, match="no certificate"):
        verifier.verify(base64.b64encode(der).decode(), BODY)


def test_sid_must_name_the_included_certificate(verifier, device, device2):
    der = pkcs7.PKCS7SignatureBuilder().set_data(BODY).add_signer(device.cert, device.key, hashes.SHA256()).sign(
        serialization.Encoding.DER, [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.NoCerts]
    )
    info = cms.ContentInfo.load(der)
    info["content"]["certificates"] = [cms.CertificateChoices.load(device2.cert_der)]
    with pytest.raises(CertAuthError, match="signer identifier"):
        verifier.verify(base64.b64encode(info.dump(force=True)).decode(), BODY)


def test_two_signers_are_rejected(verifier, device, device2):
    der = (
        pkcs7.PKCS7SignatureBuilder().set_data(BODY)
        .add_signer(device.cert, device.key, hashes.SHA256())
        .add_signer(device2.cert, device2.key, hashes.SHA256())
        .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary])
    )
    with pytest.raises(CertAuthError, match="exactly one signer"):
        verifier.verify(base64.b64encode(der).decode(), BODY)


def test_signer_found_among_several_certificates(verifier, ca, device):
    der = (
        pkcs7.PKCS7SignatureBuilder().set_data(BODY)
        .add_signer(device.cert, device.key, hashes.SHA256())
        .add_certificate(ca.cert)
        .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary])
    )
    assert verifier.verify(base64.b64encode(der).decode(), BODY).cert == device.cert


def test_attached_content_must_equal_body(verifier, device):
    der = pkcs7.PKCS7SignatureBuilder().set_data(BODY).add_signer(device.cert, device.key, hashes.SHA256()).sign(
        serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary]
    )
    header = base64.b64encode(der).decode()
    assert verifier.verify(header, BODY).cert == device.cert
    with pytest.raises(CertAuthError, match="content different"):
        verifier.verify(header, BODY + b" ")


def test_unsupported_digest_is_rejected(verifier, valid_header):
    header = _mutate_signer_info(valid_header, digest_algorithm={"algorithm": "md5"})
    with pytest.raises(CertAuthError, match="unsupported digest"):
        verifier.verify(header, BODY)


# --- interoperability with other CMS implementations -------------------------------


def _write(tmp_path, identity: pki.Identity, name: str):
    cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert.write_bytes(identity.cert_pem())
    key.write_bytes(identity.key_pem())
    key.chmod(0o600)
    return cert, key


@needs_openssl
@pytest.mark.parametrize("md", ["sha1", "sha256"])
@pytest.mark.parametrize("extra", [[], ["-noattr"], ["-stream"]])
def test_accepts_openssl_cms_signatures(tmp_path, verifier, device, md, extra):
    cert, key = _write(tmp_path, device, "device")
    body = tmp_path / "body.plist"
    body.write_bytes(BODY)
    der = subprocess.run(
        ["openssl", "cms", "-sign", "-binary", "-md", md, "-in", str(body), "-signer", str(cert),
         "-inkey", str(key), "-outform", "DER", *extra],
        check=True, capture_output=True,
    ).stdout
    # -stream produces BER with indefinite lengths, as some Apple CMS encoders do
    assert verifier.verify(base64.b64encode(der).decode(), BODY).cert == device.cert


def test_accepts_cryptography_pkcs7_signatures(verifier, device):
    der = pkcs7.PKCS7SignatureBuilder().set_data(BODY).add_signer(device.cert, device.key, hashes.SHA512()).sign(
        serialization.Encoding.DER, [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary]
    )
    assert verifier.verify(base64.b64encode(der).decode(), BODY).cert == device.cert


@needs_openssl
@pytest.mark.parametrize("digest", ["sha1", "sha256"])
@pytest.mark.parametrize("signed_attrs", [True, False])
def test_openssl_accepts_sign_detached(tmp_path, ca, device, digest, signed_attrs):
    ca_pem = tmp_path / "ca.pem"
    ca_pem.write_bytes(ca.cert_pem())
    body, sig = tmp_path / "body", tmp_path / "sig.der"
    body.write_bytes(BODY)
    sig.write_bytes(base64.b64decode(sign_detached(BODY, device.cert, device.key, digest=digest, signed_attrs=signed_attrs)))
    cmd = ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(sig), "-content", str(body),
           "-CAfile", str(ca_pem), "-purpose", "sslclient", "-out", "/dev/null"]
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    body.write_bytes(BODY + b"x")
    assert subprocess.run(cmd, capture_output=True).returncode != 0


# --- fuzzing: hostile input only ever raises CertAuthError -------------------------------


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(header=st.one_of(st.none(), st.text(max_size=300)), body=st.binary(max_size=300))
def test_fuzz_random_headers(verifier, header, body):
    try:
        verifier.verify(header, body)
    except CertAuthError:
        return
    pytest.fail("random header verified")


@FUZZ
@given(b64=st.binary(max_size=400), body=st.binary(max_size=100))
def test_fuzz_random_der(verifier, b64, body):
    with pytest.raises(CertAuthError):
        verifier.verify(base64.b64encode(b64).decode(), body)


@FUZZ
@given(
    edits=st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255), st.sampled_from(["set", "insert", "delete"])),
                   min_size=1, max_size=4),
    cut=st.one_of(st.none(), st.integers(min_value=0)),
)
def test_fuzz_mutated_signatures(verifier, valid_header, device, edits, cut):
    der = bytearray(base64.b64decode(valid_header))
    for pos, value, op in edits:
        pos %= len(der) or 1
        if op == "set":
            der[pos] = value
        elif op == "insert":
            der.insert(pos, value)
        elif der:
            del der[pos]
    if cut is not None:
        der = der[: cut % (len(der) + 1)]
    try:
        signer = verifier.verify(base64.b64encode(bytes(der)).decode(), BODY)
    except CertAuthError:
        return
    # a mutation outside the signed parts (e.g. the digestAlgorithms set) may still verify,
    # but only ever as the genuine device
    assert signer.cert == device.cert


@FUZZ
@given(body=st.binary(max_size=500))
def test_fuzz_bodies(verifier, valid_header, body):
    if body == BODY:
        return
    with pytest.raises(CertAuthError):
        verifier.verify(valid_header, body)
