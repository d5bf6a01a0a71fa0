"""OAuth 1.0a request signing (RFC 5849, HMAC-SHA1) as Apple's ``GET /session`` wants it.

Pure functions: the client signs with them and the mock ADE server verifies with them.
The key is ``consumer_secret&access_secret``; the base string is the method, the
normalized URL and the sorted, percent-encoded parameters (query and ``oauth_*``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from mdm.errors import ParseError

SIGNATURE_METHOD = "HMAC-SHA1"
REALM = "ADM"


def percent(value: str) -> str:
    """RFC 3986 percent-encoding: everything but unreserved characters."""
    return quote(value, safe="-._~")


def normalized_url(url: str) -> str:
    """Scheme and host lowercase, default port dropped, no query or fragment."""
    u = urlsplit(url)
    scheme, host = u.scheme.lower(), (u.hostname or "").lower()
    port = u.port
    netloc = host if port is None or (scheme, port) in (("http", 80), ("https", 443)) else f"{host}:{port}"
    return f"{scheme}://{netloc}{u.path or '/'}"


def base_string(method: str, url: str, params: dict[str, str]) -> str:
    """The signature base string; ``params`` are the oauth_* values (without the signature)."""
    pairs = [(percent(k), percent(v)) for k, v in parse_qsl(urlsplit(url).query, keep_blank_values=True)]
    pairs += [(percent(k), percent(v)) for k, v in params.items() if k not in ("oauth_signature", "realm")]
    joined = "&".join(f"{k}={v}" for k, v in sorted(pairs))
    return "&".join((method.upper(), percent(normalized_url(url)), percent(joined)))


def signature(base: str, consumer_secret: str, token_secret: str) -> str:
    key = f"{percent(consumer_secret)}&{percent(token_secret)}".encode()
    return base64.b64encode(hmac.new(key, base.encode(), hashlib.sha1).digest()).decode()


def authorization_header(method: str, url: str, *, consumer_key: str, consumer_secret: str, token: str,
                         token_secret: str, nonce: str | None = None, timestamp: int | None = None) -> str:
    params = {
        "oauth_consumer_key": consumer_key,
        "oauth_token": token,
        "oauth_signature_method": SIGNATURE_METHOD,
        "oauth_timestamp": str(int(time.time()) if timestamp is None else timestamp),
        "oauth_nonce": nonce or secrets.token_hex(16),
        "oauth_version": "1.0",
    }
    params["oauth_signature"] = signature(base_string(method, url, params), consumer_secret, token_secret)
    return f'OAuth realm="{REALM}", ' + ", ".join(f'{k}="{percent(v)}"' for k, v in params.items())


def parse_authorization(header: str | None) -> dict[str, str]:
    """``OAuth k="v", ...`` -> {k: v} (values percent-decoded)."""
    if not header or not header.startswith("OAuth "):
        raise ParseError("Authorization is not an OAuth header")
    out: dict[str, str] = {}
    for part in header[len("OAuth "):].split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep or len(value) < 2 or value[0] != '"' or value[-1] != '"':
            raise ParseError(f"malformed OAuth parameter {part[:40]!r}")
        out[key.strip()] = unquote(value[1:-1])
    return out


def verify(method: str, url: str, params: dict[str, str], consumer_secret: str, token_secret: str) -> bool:
    """Whether ``params`` (a parsed header) carry a valid HMAC-SHA1 signature for this request."""
    if params.get("oauth_signature_method") != SIGNATURE_METHOD or "oauth_signature" not in params:
        return False
    expected = signature(base_string(method, url, params), consumer_secret, token_secret)
    return hmac.compare_digest(expected, params["oauth_signature"])
