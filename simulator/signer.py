"""``Mdm-Signature`` for one device identity, fast: the DER is assembled from parts made once.

``mdm.signature.sign_detached`` builds the detached CMS SignedData through asn1crypto,
which costs about twice the RSA-2048 signature itself. A virtual iPad always signs the
same way (SHA-256, RSA PKCS#1 v1.5, signed attributes content-type, signing-time and
message-digest, its certificate in the ``certificates`` set, issuer and serial as the
signer identifier), so everything but the signed attributes and the signature is fixed
per certificate. The output is byte for byte what ``sign_detached`` makes for the same
body, certificate, key and signing time (PKCS#1 v1.5 signatures are deterministic).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from collections.abc import Callable

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from mdm.pki import utcnow

_PKCS1 = padding.PKCS1v15()
_SHA256 = hashes.SHA256()


def der(tag: int, content: bytes) -> bytes:
    """One DER value (definite length)."""
    n = len(content)
    if n < 0x80:
        return bytes((tag, n)) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(size))) + size + content


def der_integer(n: int) -> bytes:
    return der(0x02, n.to_bytes(n.bit_length() // 8 + 1, "big", signed=True))


def _oid(*arcs: int) -> bytes:
    body = bytearray((40 * arcs[0] + arcs[1],))
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body += bytes(reversed(chunk))
    return der(0x06, bytes(body))


_NULL = b"\x05\x00"
_OID_DATA = _oid(1, 2, 840, 113549, 1, 7, 1)
_OID_SIGNED_DATA = _oid(1, 2, 840, 113549, 1, 7, 2)
_SHA256_ALG = der(0x30, _oid(2, 16, 840, 1, 101, 3, 4, 2, 1) + _NULL)
_RSA_ALG = der(0x30, _oid(1, 2, 840, 113549, 1, 1, 1) + _NULL)
_ATTR_CONTENT_TYPE = der(0x30, _oid(1, 2, 840, 113549, 1, 9, 3) + der(0x31, _OID_DATA))
_OID_SIGNING_TIME = _oid(1, 2, 840, 113549, 1, 9, 5)
_OID_MESSAGE_DIGEST = _oid(1, 2, 840, 113549, 1, 9, 4)
_VERSION_1 = der_integer(1)


def _time(when: dt.datetime) -> bytes:
    """UTCTime before 2050, GeneralizedTime from then on (RFC 5652 section 11.3)."""
    if when.year < 2050:
        return der(0x17, when.strftime("%y%m%d%H%M%SZ").encode())
    return der(0x18, when.strftime("%Y%m%d%H%M%SZ").encode())


class DetachedSigner:
    """Signs bodies with one identity; ``fingerprint`` is the SHA-256 of the certificate DER."""

    def __init__(self, cert: x509.Certificate, key: rsa.RSAPrivateKey, *,
                 clock: Callable[[], dt.datetime] = utcnow) -> None:
        if not isinstance(key, rsa.RSAPrivateKey):
            raise TypeError("DetachedSigner signs with RSA keys only")
        self.cert, self.key, self.clock = cert, key, clock
        cert_der = cert.public_bytes(Encoding.DER)
        self.fingerprint = hashlib.sha256(cert_der).digest()
        sid = der(0x30, cert.issuer.public_bytes() + der_integer(cert.serial_number))
        self._signer_head = _VERSION_1 + sid + _SHA256_ALG
        self._data_head = (_VERSION_1 + der(0x31, _SHA256_ALG) + der(0x30, _OID_DATA)
                           + der(0xA0, cert_der))

    def sign(self, body: bytes, *, signing_time: dt.datetime | None = None) -> str:
        """The ``Mdm-Signature`` header value for ``body``."""
        when = (signing_time or self.clock()).replace(microsecond=0)
        attrs = (_ATTR_CONTENT_TYPE
                 + der(0x30, _OID_SIGNING_TIME + der(0x31, _time(when)))
                 + der(0x30, _OID_MESSAGE_DIGEST + der(0x31, der(0x04, hashlib.sha256(body).digest()))))
        signature = self.key.sign(der(0x31, attrs), _PKCS1, _SHA256)
        info = der(0x30, self._signer_head + der(0xA0, attrs) + _RSA_ALG + der(0x04, signature))
        signed_data = der(0x30, self._data_head + der(0x31, info))
        return base64.b64encode(der(0x30, _OID_SIGNED_DATA + der(0xA0, signed_data))).decode("ascii")
