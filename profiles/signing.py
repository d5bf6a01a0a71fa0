"""CMS signing of configuration profiles (``.mobileconfig``).

A signed profile is a DER CMS SignedData with the plist attached and the
signer's certificate chain included, so iOS shows it as verified and
``openssl cms -verify -inform DER -CAfile ca.pem`` accepts it. The reverse
operations are for the simulator, which plays the device.
"""

from __future__ import annotations

import datetime as dt
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
    parts = parse_signed_data(der, error=ParseError)
    if parts.content is None:
        raise ParseError("signed profile has no attached content")
    signer_der = next((c for c in parts.certs if sid_matches(parts, c)), None)
    if signer_der is None:
        raise ParseError("signed profile does not include the signer certificate")
    try:  # cryptography parses lazily: touch every field used later while errors are mapped
        certs = [x509.load_der_x509_certificate(signer_der)]
        certs += [x509.load_der_x509_certificate(c) for c in parts.certs if c is not signer_der]
        for cert in certs:
            cert.subject, cert.issuer, cert.not_valid_before_utc, cert.not_valid_after_utc  # noqa: B018
        key = certs[0].public_key()
    except Exception as e:  # hostile DER raises ValueError, UnsupportedAlgorithm, ...
        raise ParseError(f"signed profile carries a malformed certificate: {type(e).__name__}") from None
    if not isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
        raise ParseError("profile signer uses neither an RSA nor an EC key")
    check_signature(parts, parts.content, key, error=ParseError)
    return parts.content, certs


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
    content, certs = unsign_profile(der)
    now = clock()
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.timezone.utc)
    _check_dates(ca_cert, now, "CA")
    current, others = certs[0], certs[1:]
    for _ in range(MAX_CHAIN):
        _check_dates(current, now, "profile signer" if current is certs[0] else "intermediate")
        if current == ca_cert or _issued_by(current, ca_cert):
            return content
        parent = next(
            (c for c in others if c.subject == current.issuer and _is_ca(c) and _issued_by(current, c)),
            None,
        )
        if parent is None:
            break
        others = [c for c in others if c is not parent]
        current = parent
    raise ParseError("profile signer does not chain to the trusted CA")
