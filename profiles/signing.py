"""CMS signing of configuration profiles (``.mobileconfig``).

A signed profile is a DER CMS SignedData with the plist attached and the
signer's certificate chain included, so iOS shows it as verified and
``openssl cms -verify -inform DER -CAfile ca.pem`` accepts it. The reverse
operations are for the simulator, which plays the device.
"""

from __future__ import annotations

import datetime as dt
import threading
from functools import lru_cache
from typing import Callable

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7

from mdm.errors import ParseError
from mdm.pki import Identity, utcnow
from mdm.cms import check_signature, parse_signed_data, sid_matches

MAX_CHAIN = 8


def sign_profile(plist_bytes: bytes, identity: Identity) -> bytes:
    """Sign ``plist_bytes`` (SHA-256, content attached, chain included); return DER."""
    builder = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(plist_bytes)
        .add_signer(identity.cert, identity.key, hashes.SHA256())
    )
    for cert in identity.chain:
        if cert != identity.cert:
            builder = builder.add_certificate(cert)
    # Binary: keep the plist byte-exact (no MIME \r\n canonicalisation).
    return builder.sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])


def unsign_profile(der: bytes) -> tuple[bytes, list[x509.Certificate]]:
    """Return (content, certificates) of a signed profile after checking its signature.

    The signer certificate comes first in the list, then the others in the
    order they were included. Only the signature is checked here, not trust:
    see ``verify_profile``.
    """
    content, certs, _ = _unsign(der)
    return content, list(certs)


def _unsign(der: bytes) -> tuple[bytes, tuple[x509.Certificate, ...], tuple[bytes, ...]]:
    parts = parse_signed_data(der, error=ParseError)
    if parts.content is None:
        raise ParseError("signed profile has no attached content")
    signer_der = next((c for c in parts.certs if sid_matches(parts, c)), None)
    if signer_der is None:
        raise ParseError("signed profile does not include the signer certificate")
    ders = (signer_der, *(c for c in parts.certs if c is not signer_der))
    certs, key = _load_certs(ders)
    check_signature(parts, parts.content, key, error=ParseError)
    return parts.content, certs, ders


@lru_cache(maxsize=64)
def _load_certs(ders: tuple[bytes, ...]) -> tuple[tuple[x509.Certificate, ...], object]:
    """The certificates and the signer's public key (every profile of one signer carries the
    same DER: parsed once per process; what fails to parse is not kept)."""
    try:  # cryptography parses lazily: touch every field used later while errors are mapped
        certs = tuple(x509.load_der_x509_certificate(c) for c in ders)
        for cert in certs:
            cert.subject, cert.issuer, cert.not_valid_before_utc, cert.not_valid_after_utc  # noqa: B018
        key = certs[0].public_key()
    except Exception as e:  # hostile DER raises ValueError, UnsupportedAlgorithm, ...
        raise ParseError(f"signed profile carries a malformed certificate: {type(e).__name__}") from None
    if not isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
        raise ParseError("profile signer uses neither an RSA nor an EC key")
    return certs, key


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except (x509.ExtensionNotFound, ValueError):
        return False


def _check_dates(cert: x509.Certificate, now: dt.datetime, what: str) -> None:
    if now < cert.not_valid_before_utc:
        raise ParseError(f"{what} certificate is not yet valid")
    if now > cert.not_valid_after_utc:
        raise ParseError(f"{what} certificate has expired")


def verify_profile(
    der: bytes, ca_cert: x509.Certificate, *, clock: Callable[[], dt.datetime] = utcnow
) -> bytes:
    """Check the signature and that the signer chains to ``ca_cert``; return the content."""
    content, certs, ders = _unsign(der)
    now = clock()
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.timezone.utc)
    _check_dates(ca_cert, now, "CA")
    path, chained = _chain(certs, ders, ca_cert, ca_cert.public_bytes(serialization.Encoding.DER))
    for i, cert in enumerate(path):  # what the walk looked at, in its order: dates change, chains do not
        _check_dates(cert, now, "intermediate" if i else "profile signer")
    if not chained:
        raise ParseError("profile signer does not chain to the trusted CA")
    return content


def _chain(certs: tuple[x509.Certificate, ...], ders: tuple[bytes, ...], ca_cert: x509.Certificate,
           ca_der: bytes) -> tuple[tuple[x509.Certificate, ...], bool]:
    key = (ders, ca_der)
    found = _CHAINS.get(key)
    if found is None:
        found = _walk(certs, ca_cert)
        with _CHAINS_LOCK:
            _CHAINS[key] = found
            while len(_CHAINS) > 64:
                _CHAINS.pop(next(iter(_CHAINS)))
    return found


#: (certificate DERs, CA DER) -> (the certificates the chain walk looked at, whether it reached the
#: CA): every profile of one signer carries the same chain, so it is walked once per process
_CHAINS: dict[tuple[tuple[bytes, ...], bytes], tuple[tuple[x509.Certificate, ...], bool]] = {}
_CHAINS_LOCK = threading.Lock()


def _walk(certs: tuple[x509.Certificate, ...], ca_cert: x509.Certificate) -> tuple[tuple[x509.Certificate, ...], bool]:
    current, others = certs[0], list(certs[1:])
    path = []
    for _ in range(MAX_CHAIN):
        path.append(current)
        if current == ca_cert or _issued_by(current, ca_cert):
            return tuple(path), True
        parent = next(
            (c for c in others if c.subject == current.issuer and _is_ca(c) and _issued_by(current, c)),
            None,
        )
        if parent is None:
            break
        others = [c for c in others if c is not parent]
        current = parent
    return tuple(path), False
