"""Certificate authority primitives (pure: no files, no network).

Creates the device-identity CA, the profile-signing identity, TLS server
certificates and development APNs push identities, and issues device client
certificates from CSRs. Storage of the resulting keys lives in
``app.pki_store``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import uuid
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mdm.errors import ParseError

UID_OID = NameOID.USER_ID  # 0.9.2342.19200300.100.1.1, where Apple puts the push topic


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def new_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@dataclass(frozen=True)
class Identity:
    """A certificate with its private key and the chain above it (not incl. root? incl. issuers)."""

    cert: x509.Certificate
    key: rsa.RSAPrivateKey
    chain: tuple[x509.Certificate, ...] = ()

    @property
    def cert_der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 fingerprint as lowercase hex (what we bind a UDID to)."""
    return cert.fingerprint(hashes.SHA256()).hex()


def fingerprint_der(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def sha1_fingerprint(cert: x509.Certificate) -> bytes:
    return cert.fingerprint(hashes.SHA1())


def _name(cn: str, org: str | None = None, extra: list[x509.NameAttribute] | None = None) -> x509.Name:
    attrs = list(extra or [])
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def _ski(key) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(key.public_key() if hasattr(key, "public_key") else key)


def create_ca(cn: str, org: str, *, days: int = 3650, key: rsa.RSAPrivateKey | None = None) -> Identity:
    key = key or new_key(2048)
    now = utcnow()
    name = _name(cn, org)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=True,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(_ski(key), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Identity(cert, key, ())


def _leaf_builder(ca: Identity, subject: x509.Name, public_key, days: int, not_before=None):
    now = not_before or utcnow()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    )


def _usage(*, sign: bool = True, encipher: bool = True) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=sign, content_commitment=False, key_encipherment=encipher,
        data_encipherment=False, key_agreement=False, key_cert_sign=False,
        crl_sign=False, encipher_only=False, decipher_only=False,
    )


def issue_identity(
    ca: Identity,
    cn: str,
    *,
    org: str | None = None,
    eku: list | None = None,
    days: int = 825,
    san_dns: list[str] | None = None,
    san_ip: list[str] | None = None,
    extra_subject: list[x509.NameAttribute] | None = None,
    key: rsa.RSAPrivateKey | None = None,
) -> Identity:
    """Issue a key and certificate signed by ``ca``."""
    key = key or new_key(2048)
    b = _leaf_builder(ca, _name(cn, org, extra_subject), key.public_key(), days)
    b = b.add_extension(_usage(), critical=True)
    if eku:
        b = b.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in (san_dns or [])]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in (san_ip or [])]
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = b.sign(ca.key, hashes.SHA256())
    return Identity(cert, key, (ca.cert,))


def issue_tls_server(ca: Identity, hostnames: list[str], ips: list[str], days: int = 825) -> Identity:
    return issue_identity(
        ca, hostnames[0] if hostnames else ips[0], org=None,
        eku=[ExtendedKeyUsageOID.SERVER_AUTH], days=days, san_dns=hostnames, san_ip=ips,
    )


def issue_signing_identity(ca: Identity, org: str, days: int = 1825, key=None) -> Identity:
    return issue_identity(
        ca, f"{org} Profile Signing", org=org,
        eku=[ExtendedKeyUsageOID.CODE_SIGNING, ExtendedKeyUsageOID.EMAIL_PROTECTION], days=days, key=key,
    )


def issue_push_identity(ca: Identity, topic: str | None = None, days: int = 365) -> Identity:
    """A development push identity shaped like Apple's: subject UID = topic."""
    topic = topic or f"com.apple.mgmt.External.{uuid.uuid4()}"
    return issue_identity(
        ca, f"APSP:{topic.rsplit('.', 1)[-1]}", org="schoolmdm development",
        eku=[ExtendedKeyUsageOID.CLIENT_AUTH], days=days,
        extra_subject=[x509.NameAttribute(UID_OID, topic)],
    )


def push_topic(cert: x509.Certificate) -> str:
    attrs = cert.subject.get_attributes_for_oid(UID_OID)
    if not attrs:
        raise ParseError("push certificate has no UID (topic) in its subject")
    return str(attrs[0].value)


def check_csr(csr: x509.CertificateSigningRequest) -> None:
    """What ``sign_csr`` requires of a CSR: a valid self-signature and an RSA key of 2048 bits or more."""
    if not csr.is_signature_valid:
        raise ParseError("CSR signature is invalid")
    pub = csr.public_key()
    if not isinstance(pub, rsa.RSAPublicKey) or pub.key_size < 2048:
        raise ParseError("CSR must carry an RSA key of at least 2048 bits")


def sign_csr(
    ca: Identity,
    csr: x509.CertificateSigningRequest,
    *,
    days: int = 365,
    not_before: dt.datetime | None = None,
    subject: x509.Name | None = None,
) -> x509.Certificate:
    """Issue a device client certificate (clientAuth) from a verified CSR."""
    check_csr(csr)
    b = _leaf_builder(ca, subject or csr.subject, csr.public_key(), days, not_before)
    b = b.add_extension(_usage(), critical=True)
    b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return b.sign(ca.key, hashes.SHA256())


def load_cert(data: bytes) -> x509.Certificate:
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as e:
        raise ParseError(f"not a certificate: {e}") from None


def load_private_key(data: bytes, password: bytes | None = None):
    """An RSA or EC private key (PEM or DER)."""
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            key = serialization.load_pem_private_key(data, password)
        else:
            key = serialization.load_der_private_key(data, password)
    except (ValueError, TypeError) as e:
        raise ParseError(f"not a private key: {e}") from None
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise ParseError("only RSA and EC keys are supported")
    return key


def load_key(data: bytes, password: bytes | None = None) -> rsa.RSAPrivateKey:
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            key = serialization.load_pem_private_key(data, password)
        else:
            key = serialization.load_der_private_key(data, password)
    except (ValueError, TypeError) as e:
        raise ParseError(f"not a private key: {e}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ParseError("only RSA keys are supported")
    return key
