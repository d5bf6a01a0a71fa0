"""A fast reader for the plain XML plists devices send; anything else is left to ``plistlib``.

``plistlib`` parses XML with expat and a Python callback for every start tag, end tag and run
of text; ``mdm.plist`` then walked the result once more for its limits. For the DeviceInformation
answer in ``tests/fixtures`` (983 bytes) that was ~55 us, and ~15 us for an Idle; this reader
takes ~27 us and ~8 us (one regular expression over the body, then one pass over its elements
that also checks the depth). It reads only the plain form iPads and ``plistlib`` write: the XML
declaration, Apple's DOCTYPE, ``<plist version="1.0">``, elements without attributes, text
whose only escapes are XML's five named entities.

It is not a second XML parser. It answers ``None`` ("not mine: ask plistlib") for anything it
does not read exactly as ``plistlib`` would: comments, CDATA, processing instructions,
character references, carriage returns, control characters, unknown or mis-nested elements, a
key without a value or a value without a key, text between elements, dates (``plistlib``'s own
parsing), other encodings, byte-order marks. So each value it returns is ``plistlib``'s value,
and each malformed document gets ``plistlib``'s error (``tests/test_plist_reader.py`` compares
the two on generated and mutated documents).
"""

from __future__ import annotations

import binascii
import re
from typing import Any

from mdm.errors import LimitExceeded

_PROLOGUE = re.compile(
    rb'(?:<\?xml version="1\.0"(?: encoding="(?:UTF|utf)-8")?\?>[ \t\n]*)?'
    rb'(?:<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1\.0//EN" '
    rb'"http://www\.apple\.com/DTDs/PropertyList-1\.0\.dtd">[ \t\n]*)?'
    rb'<plist(?: version="1\.0")?>')
_END = "</plist>"
# one element ("<", "/"?, a name, "/"?, ">") and the text up to the next "<"; a body is a run of them
_ELEMENT = re.compile(r"<(/?)([a-z]+)(/?)>([^<]*)")
# what expat refuses or rewrites (control characters, CR, U+FFFE/U+FFFF: the reader leaves all of
# U+FFF0-U+FFFF, UTF-8 EF BF xx, to plistlib) and what it leaves to plistlib anyway (comments,
# CDATA, processing instructions, character references)
_CONTROL = bytes(c for c in range(32) if c not in (9, 10))
_LEFT_TO_PLISTLIB = (b"&#", b"]]>", b"\xef\xbf")  # anywhere; and "<!", "<?" after the prologue
_NAMED = re.compile(r"&(?:lt|gt|quot|apos|amp);")
_ENTITIES = (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&apos;", "'"), ("&amp;", "&"))  # &amp; last
_WS = " \t\n"
_TEXT_TAGS = frozenset(("key", "string", "integer", "real", "data"))
_NONE = object()


def read(data: bytes, max_depth: int) -> Any | None:
    """The plist's value, or None when ``plistlib`` must read it (see the module's docstring).

    What it returns needs no further checks: XML cannot share a value between two places, the
    text holds no NUL, every value is a plist type, and nesting deeper than ``max_depth`` (the
    top-level value is at depth 1) raises ``LimitExceeded`` as ``mdm.plist`` does."""
    m = _PROLOGUE.match(data)
    if (m is None or len(data.translate(None, _CONTROL)) != len(data)
            or any(odd in data for odd in _LEFT_TO_PLISTLIB)):
        return None
    start = m.end()
    if data.find(b"<!", start) >= 0 or data.find(b"<?", start) >= 0:
        return None
    try:
        doc = data[start:].decode("utf-8")
    except UnicodeDecodeError:
        return None
    end = doc.rfind(_END)
    if end < 0 or doc[end + len(_END):].strip(_WS):
        return None
    body = doc[:end]
    tokens = _ELEMENT.findall(body)
    # each token starts at a "<" and its text runs to the next one: when every "<" starts a
    # token, the tokens are the whole body, but for what comes before the first "<"
    if body.count("<") != len(tokens) or body[:body.find("<")].strip(_WS):
        return None
    try:
        value = _read(tokens, max_depth)
    except (ValueError, binascii.Error):
        return None  # plistlib says what is wrong
    return None if value is _NONE else value


def _unescape(raw: str) -> str | None:
    if "&" not in raw:
        return raw
    if raw.count("&") != len(_NAMED.findall(raw)):
        return None  # an "&" that is not one of the five named entities
    for entity, char in _ENTITIES:
        raw = raw.replace(entity, char)
    return raw


def _scalar(tag: str, text: str) -> Any:
    if tag == "string":
        return text
    if tag == "integer":
        return int(text, 16) if text.startswith(("0x", "0X")) else int(text)
    if tag == "real":
        return float(text)
    return binascii.a2b_base64(text.encode("utf-8"))  # data, decoded as plistlib decodes it


def _read(tokens: list[tuple[str, str, str, str]], max_depth: int) -> Any:
    stack: list = []
    key: str | None = None
    root: Any = _NONE
    it = iter(tokens)
    for closing, tag, empty, text in it:
        if closing:  # </dict> or </array>; the text elements' end tags are taken with them below
            if (not stack or key is not None or text.strip(_WS)
                    or tag != ("dict" if type(stack[-1]) is dict else "array")):
                return _NONE
            stack.pop()
            continue
        if tag in _TEXT_TAGS:
            if empty:
                if text.strip(_WS):
                    return _NONE
                raw: str | None = ""
            else:
                raw = _unescape(text)
                end = next(it, None)
                if raw is None or end is None or end[0] != "/" or end[1] != tag or end[2] or end[3].strip(_WS):
                    return _NONE
            if tag == "key":
                if key is not None or not stack or type(stack[-1]) is not dict:
                    return _NONE
                key = raw
                continue
            value = _scalar(tag, raw)
        elif tag == "dict" or tag == "array" or tag == "true" or tag == "false":
            if text.strip(_WS) or (not empty and (tag == "true" or tag == "false")):
                return _NONE
            value = ({} if tag == "dict" else []) if tag[0] in "da" else tag == "true"
        else:
            return _NONE  # date, unknown elements
        if len(stack) >= max_depth:
            raise LimitExceeded(f"plist nesting deeper than {max_depth}")
        if stack:
            parent = stack[-1]
            if type(parent) is dict:
                if key is None:
                    return _NONE
                parent[key] = value
                key = None
            else:
                parent.append(value)
        elif root is _NONE:
            root = value
        else:
            return _NONE  # a second top-level value
        if not empty and (tag == "dict" or tag == "array"):
            stack.append(value)
    if stack or key is not None:
        return _NONE
    return root
