"""The ADE identity: the key pair whose certificate is uploaded to Apple School Manager.

Apple encrypts the server token (``.p7m``) to this certificate; ``schoolmdm ade token`` decrypts
it with the key. Created on first use in ``<data_dir>/pki`` as ``ade.pem`` / ``ade.key`` (key
mode 0600), self-signed, RSA-2048, valid ten years; reused afterwards.
"""

from __future__ import annotations

import datetime as dt
import fcntl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from app.pki_store import load_identity, save_identity
from mdm import pki
from mdm.pki import Identity

CERT, KEY = "ade.pem", "ade.key"


def _create(org: str) -> Identity:
    key = pki.new_key(2048)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"{org} MDM server (Apple School Manager)")])
    now = pki.utcnow()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return Identity(cert, key, ())


def load_or_create_ade_identity(data_dir: Path | str, org: str) -> Identity:
    d = Path(data_dir) / "pki"
    d.mkdir(parents=True, exist_ok=True)
    with open(d / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        cert_path, key_path = d / CERT, d / KEY
        if cert_path.exists() and key_path.exists():
            return load_identity(cert_path, key_path)
        ident = _create(org)
        save_identity(ident, cert_path, key_path)
        return ident
