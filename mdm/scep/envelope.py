"""CMS EnvelopedData for SCEP's pkcsPKIEnvelope: RSA key transport (PKCS#1 v1.5) with
AES-128/192/256-CBC or (for old clients) DES-EDE3-CBC and single DES-CBC.

``cryptography``'s own PKCS#7 decryption only knows AES-CBC, so the structure is
handled with asn1crypto and the ciphers with ``cryptography``.
"""

from __future__ import annotations

import os

from asn1crypto import cms, core, parser
from cryptography import x509
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from mdm.scep.cms import DECODE_ERRORS, cert_ref, der, identifies, issuer_and_serial
from mdm.scep.model import FailInfo, ScepMessageError

# our name -> (asn1crypto algorithm name, cipher class, key bytes, block bytes)
CIPHERS: dict[str, tuple[str, type, int, int]] = {
    "aes128": ("aes128_cbc", algorithms.AES, 16, 16),
    "aes192": ("aes192_cbc", algorithms.AES, 24, 16),
    "aes256": ("aes256_cbc", algorithms.AES, 32, 16),
    "3des": ("tripledes_3key", TripleDES, 24, 8),
    "des": ("des", TripleDES, 8, 8),  # single DES, run as DES-EDE3 with K1=K2=K3
}
_BY_ASN1_NAME = {spec[0]: name for name, spec in CIPHERS.items()}
DEFAULT_CIPHER = "aes256"


class _EncryptedContentInfo(core.Sequence):
    """EncryptedContentInfo whose encryptedContent may be BER-constructed, as Go's pkcs7
    (micromdm scepclient) writes it: [0] constructed around an OCTET STRING."""

    _fields = [
        ("content_type", cms.ContentType),
        ("content_encryption_algorithm", cms.EncryptionAlgorithm),
        ("encrypted_content", core.Any, {"optional": True}),
    ]


class _EnvelopedData(core.Sequence):
    _fields = [
        (name, _EncryptedContentInfo if name == "encrypted_content_info" else spec, *params)
        for name, spec, *params in cms.EnvelopedData._fields
    ]


class _EnvelopedContentInfo(core.Sequence):
    _fields = [("content_type", cms.ContentType), ("content", _EnvelopedData, {"explicit": 0})]


MAX_BER_DEPTH = 4


def _octets(contents: bytes, depth: int) -> bytes:
    """Concatenate the OCTET STRING chunks of a constructed (BER) string."""
    if depth > MAX_BER_DEPTH:
        raise ValueError("BER string nested too deeply")
    out, pointer = [], 0
    while pointer < len(contents):
        class_, method, tag, header, inner, trailer = parser.parse(contents[pointer:])
        if class_ != 0 or tag != 4:
            raise ValueError("constructed string chunk is not an OCTET STRING")
        out.append(_octets(inner, depth + 1) if method else inner)
        pointer += len(header) + len(inner) + len(trailer)
    return b"".join(out)


def _encrypted_content(eci: _EncryptedContentInfo) -> bytes | None:
    """encryptedContent [0] IMPLICIT OCTET STRING, primitive or constructed, read from the
    raw EncryptedContentInfo children (asn1crypto only takes the primitive form)."""
    contents, pointer = eci.contents, 0
    while pointer < len(contents):
        class_, method, tag, header, inner, trailer = parser.parse(contents[pointer:])
        pointer += len(header) + len(inner) + len(trailer)
        if class_ == 2 and tag == 0:
            return _octets(inner, 1) if method else inner
    return None


def _cipher(algorithm: type, key: bytes, iv: bytes) -> Cipher:
    if len(key) == 8:  # single DES: TripleDES with three equal keys is DES
        key = key * 3
    return Cipher(algorithm(key), modes.CBC(iv))


def encrypt(content: bytes, recipient: x509.Certificate, cipher: str = DEFAULT_CIPHER) -> bytes:
    """DER ContentInfo(EnvelopedData) of ``content`` for the RSA key in ``recipient``."""
    if cipher not in CIPHERS:
        raise ValueError(f"unknown cipher {cipher!r}")
    asn1_name, algorithm, key_len, block = CIPHERS[cipher]
    pub = recipient.public_key()
    if not isinstance(pub, rsa.RSAPublicKey):
        raise ScepMessageError("recipient certificate key is not RSA", FailInfo.badAlg)
    key, iv = os.urandom(key_len), os.urandom(block)
    padder = sym_padding.PKCS7(block * 8).padder()
    plain = padder.update(content) + padder.finalize()
    encryptor = _cipher(algorithm, key, iv).encryptor()
    encrypted = encryptor.update(plain) + encryptor.finalize()
    recipient_info = cms.RecipientInfo(
        name="ktri",
        value=cms.KeyTransRecipientInfo({
            "version": "v0",
            "rid": cms.RecipientIdentifier(
                name="issuer_and_serial_number", value=issuer_and_serial(recipient)
            ),
            "key_encryption_algorithm": {"algorithm": "rsaes_pkcs1v15", "parameters": core.Null()},
            "encrypted_key": pub.encrypt(key, padding.PKCS1v15()),
        }),
    )
    enveloped = cms.EnvelopedData({
        "version": "v0",
        "recipient_infos": [recipient_info],
        "encrypted_content_info": {
            "content_type": "data",
            "content_encryption_algorithm": {"algorithm": asn1_name, "parameters": iv},
            "encrypted_content": encrypted,
        },
    })
    return cms.ContentInfo({"content_type": "enveloped_data", "content": enveloped}).dump()


def _unwrap_key(key: rsa.RSAPrivateKey, encrypted_key: bytes, key_len: int) -> bytes:
    """RSA PKCS#1 v1.5 key transport with Bleichenbacher countermeasures (RFC 3218 §2.3.2):
    a bad padding or a wrong-length key becomes a random key, so failures surface
    identically later, as an undecryptable content."""
    fallback = os.urandom(key_len)
    try:
        cek = key.decrypt(encrypted_key, padding.PKCS1v15())
    except ValueError:
        return fallback
    return cek if len(cek) == key_len else fallback


def decrypt(data: bytes, cert: x509.Certificate, key: rsa.RSAPrivateKey) -> tuple[bytes, str]:
    """Decrypt a DER ContentInfo(EnvelopedData) addressed to ``cert``.

    Returns (plaintext, cipher name). Raises ScepMessageError: badAlg for ciphers or key
    transports we do not do, badMessageCheck for anything else.
    """
    try:
        info = _EnvelopedContentInfo.load(data, strict=True)
        if info["content_type"].native != "enveloped_data":
            raise ScepMessageError("pkcsPKIEnvelope is not EnvelopedData")
        enveloped = info["content"]
        eci = enveloped["encrypted_content_info"]
        alg = eci["content_encryption_algorithm"]
        asn1_name = alg["algorithm"].native
        if asn1_name not in _BY_ASN1_NAME:
            raise ScepMessageError(f"unsupported content encryption {asn1_name}", FailInfo.badAlg)
        cipher = _BY_ASN1_NAME[asn1_name]
        _, algorithm, key_len, block = CIPHERS[cipher]
        iv = alg["parameters"].native
        encrypted = _encrypted_content(eci)
        chosen, ours = None, cert_ref(der(cert))
        for ri in enveloped["recipient_infos"]:
            if ri.name == "ktri" and identifies(ri.chosen["rid"], ours):
                chosen = ri.chosen
                break
        if chosen is None:
            raise ScepMessageError("no RecipientInfo for our certificate", FailInfo.badCertId)
        kea = chosen["key_encryption_algorithm"]["algorithm"].native
        if kea != "rsaes_pkcs1v15":
            raise ScepMessageError(f"unsupported key transport {kea}", FailInfo.badAlg)
        encrypted_key = chosen["encrypted_key"].native
    except DECODE_ERRORS as e:
        raise ScepMessageError(f"malformed EnvelopedData: {type(e).__name__}: {e}") from None
    if not isinstance(iv, bytes) or len(iv) != block:
        raise ScepMessageError("content encryption IV missing or of the wrong size")
    if not isinstance(encrypted, bytes) or not encrypted or len(encrypted) % block:
        raise ScepMessageError("encrypted content missing or not a whole number of blocks")
    if not isinstance(encrypted_key, bytes):
        raise ScepMessageError("encrypted key missing")
    cek = _unwrap_key(key, encrypted_key, key_len)
    decryptor = _cipher(algorithm, cek, iv).decryptor()
    plain = decryptor.update(encrypted) + decryptor.finalize()
    try:
        unpadder = sym_padding.PKCS7(block * 8).unpadder()
        return unpadder.update(plain) + unpadder.finalize(), cipher
    except ValueError:
        raise ScepMessageError("could not decrypt pkcsPKIEnvelope") from None
