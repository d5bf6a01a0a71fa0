"""Keys and certificates on disk: created on first start, reused afterwards.

Layout under ``<data_dir>/pki``::

    ca.pem / ca.key                 device-identity CA (SCEP issues from it)
    signing.pem / signing.key       profile-signing identity (issued by the CA)
    tls.pem / tls.key               development HTTPS server certificate
    push-ca.pem / push-ca.key       development stand-in for Apple's push CA
    push.pem / push.key             development APNs push identity (UID = topic)
    apns-server.pem / .key          TLS certificate of the mock APNs server

Private keys are written mode 0600, atomically. Operators may point settings
at their own CA or APNs files instead. Creation is serialized with a file lock
so several workers starting at once agree on one PKI.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from mdm import pki
from mdm.pki import Identity


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def save_identity(ident: Identity, cert_path: Path, key_path: Path) -> None:
    _write(key_path, ident.key_pem(), 0o600)
    chain = ident.cert_pem() + b"".join(
        c.public_bytes(pki.serialization.Encoding.PEM) for c in ident.chain
    )
    _write(cert_path, chain, 0o644)


def load_identity(cert_path: Path, key_path: Path) -> Identity:
    from cryptography import x509

    certs = x509.load_pem_x509_certificates(cert_path.read_bytes())
    key = pki.load_private_key(key_path.read_bytes())
    return Identity(certs[0], key, tuple(certs[1:]))


@dataclass(frozen=True)
class PKI:
    dir: Path
    ca: Identity
    signing: Identity
    tls: Identity
    push: Identity
    push_ca: Identity
    apns_server: Identity

    @property
    def topic(self) -> str:
        return pki.push_topic(self.push.cert)

    def path(self, name: str) -> Path:
        return self.dir / name


def _hosts(public_url: str) -> tuple[list[str], list[str]]:
    import ipaddress

    names, ips = ["localhost"], ["127.0.0.1", "::1"]
    host = urlparse(public_url).hostname
    if host:
        try:
            ipaddress.ip_address(host)
            if host not in ips:
                ips.append(host)
        except ValueError:
            if host not in names:
                names.insert(0, host)
    return names, ips


def _ensure(d: Path, stem: str, make) -> Identity:
    cert_path, key_path = d / f"{stem}.pem", d / f"{stem}.key"
    if cert_path.exists() and key_path.exists():
        return load_identity(cert_path, key_path)
    ident = make()
    save_identity(ident, cert_path, key_path)
    return ident


def _signing_key(kind: str):
    from cryptography.hazmat.primitives.asymmetric import ec

    # P-256 signs a profile in ~0.1 ms where RSA-2048 takes ~1 ms; both verify with openssl and iOS
    return ec.generate_private_key(ec.SECP256R1()) if kind == "ec-p256" else pki.new_key(2048)


def load_or_create(data_dir: Path, *, org: str, public_url: str,
                   ca_files: tuple[Path, Path] | None = None,
                   push_files: tuple[Path, Path] | None = None,
                   signing_key: str = "ec-p256") -> PKI:
    d = Path(data_dir) / "pki"
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    with open(d / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ca_files:
            ca = load_identity(*ca_files)
        else:
            ca = _ensure(d, "ca", lambda: pki.create_ca(f"{org} Device CA", org))
        signing = _ensure(d, "signing", lambda: pki.issue_signing_identity(ca, org, key=_signing_key(signing_key)))
        names, ips = _hosts(public_url)
        tls = _ensure(d, "tls", lambda: pki.issue_tls_server(ca, names, ips))
        push_ca = _ensure(d, "push-ca", lambda: pki.create_ca("schoolmdm development push CA", "schoolmdm development"))
        if push_files:
            push = load_identity(*push_files)
        else:
            push = _ensure(d, "push", lambda: pki.issue_push_identity(push_ca))
        apns_server = _ensure(d, "apns-server", lambda: pki.issue_tls_server(push_ca, ["localhost"], ["127.0.0.1", "::1"]))
    return PKI(d, ca, signing, tls, push, push_ca, apns_server)
