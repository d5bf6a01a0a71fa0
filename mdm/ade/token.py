"""The ADE server token: what Apple School Manager hands out for an MDM server (``*.p7m``).

The file is an S/MIME message (MIME headers, base64 body) whose body is a CMS
EnvelopedData encrypted to the public key the MDM server uploaded (RSA key transport,
AES-CBC or 3DES-CBC content). The plaintext is itself a small MIME text part holding
a JSON document between ``-----BEGIN MESSAGE-----`` and ``-----END MESSAGE-----``:
``consumer_key``, ``consumer_secret``, ``access_token``, ``access_secret`` and
``access_token_expiry``. Accepted inputs: the S/MIME file as downloaded, a bare
base64 body, PEM (``-----BEGIN PKCS7-----`` / ``CMS``) or DER.

``seal_server_token`` does the reverse (the mock ADE server makes tokens with it).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email
import email.policy
import json
import re
import textwrap
from dataclasses import dataclass

from cryptography import x509

from mdm.errors import ParseError
from mdm.scep import envelope
from mdm.scep.model import ScepMessageError

MAX_TOKEN_BYTES = 256 * 1024
FIELDS = ("consumer_key", "consumer_secret", "access_token", "access_secret")
_MESSAGE = re.compile(rb"-----BEGIN MESSAGE-----(.*?)-----END MESSAGE-----", re.S)
_PEM = re.compile(rb"-----BEGIN (?:PKCS7|CMS)-----(.*?)-----END (?:PKCS7|CMS)-----", re.S)


@dataclass(frozen=True)
class ServerToken:
    consumer_key: str
    consumer_secret: str
    access_token: str
    access_secret: str
    access_token_expiry: dt.datetime | None = None

    def __repr__(self) -> str:  # secrets never reach a log line by accident
        return (f"ServerToken(consumer_key={self.consumer_key[:6]}…, access_token={self.access_token[:6]}…, "
                f"access_token_expiry={self.access_token_expiry})")

    __str__ = __repr__

    def as_json(self) -> dict:
        exp = self.access_token_expiry
        return {"consumer_key": self.consumer_key, "consumer_secret": self.consumer_secret,
                "access_token": self.access_token, "access_secret": self.access_secret,
                "access_token_expiry": exp.strftime("%Y-%m-%dT%H:%M:%SZ") if exp else None}


def _b64(data: bytes, what: str) -> bytes:
    try:
        return base64.b64decode(b"".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ParseError(f"{what} is not valid base64") from None


def envelope_der(data: bytes) -> bytes:
    """The DER EnvelopedData inside an S/MIME file, PEM, base64 text or DER."""
    if len(data) > MAX_TOKEN_BYTES:
        raise ParseError(f"server token larger than {MAX_TOKEN_BYTES} bytes")
    if data[:1] == b"\x30":
        return data  # DER, as is: its last bytes may well be whitespace values
    body = data.strip()
    if not body:
        raise ParseError("server token file is empty")
    pem = _PEM.search(body)
    if pem:
        return _b64(pem.group(1), "PEM server token")
    head = body.split(b"\n", 1)[0]
    if b":" in head:  # MIME headers: an S/MIME message as Apple School Manager serves it
        msg = email.message_from_bytes(body, policy=email.policy.compat32)
        if msg.is_multipart():
            raise ParseError("server token is a multipart message, expected application/pkcs7-mime")
        ctype = msg.get_content_type()
        if ctype not in ("application/pkcs7-mime", "application/x-pkcs7-mime"):
            raise ParseError(f"server token has content type {ctype}, expected application/pkcs7-mime")
        payload = msg.get_payload(decode=True)
        if not payload:
            raise ParseError("server token message has no body")
        return payload if payload[:1] == b"\x30" else _b64(payload, "server token body")
    return _b64(body, "server token")


def parse_token_message(plain: bytes) -> ServerToken:
    """The JSON between the MESSAGE markers of a decrypted token."""
    m = _MESSAGE.search(plain)
    if m is None:
        raise ParseError("decrypted server token has no -----BEGIN MESSAGE----- block")
    try:
        doc = json.loads(m.group(1).strip().decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ParseError("server token message is not JSON") from None
    if not isinstance(doc, dict):
        raise ParseError("server token message is not a JSON object")
    missing = [f for f in FIELDS if not isinstance(doc.get(f), str) or not doc[f]]
    if missing:
        raise ParseError(f"server token lacks {', '.join(missing)}")
    return ServerToken(*(doc[f] for f in FIELDS), access_token_expiry=_expiry(doc.get("access_token_expiry")))


def _expiry(value) -> dt.datetime | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ParseError("access_token_expiry must be a string")
    try:
        t = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ParseError(f"access_token_expiry {value!r} is not an ISO 8601 time") from None
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


def decrypt_server_token(p7m_bytes: bytes, key, cert: x509.Certificate) -> ServerToken:
    """Decrypt a server token with the MDM server's ADE key pair (the certificate uploaded to ASM)."""
    der = envelope_der(p7m_bytes)
    try:
        plain, _ = envelope.decrypt(der, cert, key)
    except ScepMessageError as e:
        raise ParseError(f"cannot decrypt the server token: {e} (was it made for this server's "
                         "ADE certificate?)") from None
    return parse_token_message(plain)


def seal_server_token(token: ServerToken, cert: x509.Certificate, *, cipher: str = "aes256") -> bytes:
    """An S/MIME ``smime.p7m`` file as Apple School Manager serves it, encrypted to ``cert``."""
    inner = (b"Content-Type: text/plain;charset=UTF-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
             b"-----BEGIN MESSAGE-----\n" + json.dumps(token.as_json()).encode() + b"\n-----END MESSAGE-----\n")
    der = envelope.encrypt(inner, cert, cipher)
    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode(), 76))
    return ("Content-Type: application/pkcs7-mime; name=\"smime.p7m\"; smime-type=enveloped-data\n"
            "Content-Transfer-Encoding: base64\n"
            "Content-Disposition: attachment; filename=\"smime.p7m\"\n"
            "Content-Description: S/MIME Encrypted Message\n\n" + body + "\n").encode()
