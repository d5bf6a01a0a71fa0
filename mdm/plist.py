"""Safe property-list parsing.

Devices send XML plists. ``plistlib`` uses expat, which expands internal
entities, so an entity-expansion ("billion laughs") body could blow up memory.
We refuse any DOCTYPE with an internal subset or ENTITY declaration, any
external entity, bodies over a size limit and nesting beyond a depth limit,
before and after parsing. Binary plists are accepted (iOS never sends them for
check-in, but tools do) under the same limits, and held to what an XML plist can
say: string keys, no NUL in strings, no null or UID values, and no more values
than the body has bytes (a binary plist can reference one object from many places,
so 200 bytes can describe a billion-element tree).
"""

from __future__ import annotations

import binascii
import datetime
import plistlib
import re
import struct
import threading
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from mdm import plist_xml
from mdm.errors import LimitExceeded, ParseError

DEFAULT_MAX_BYTES = 2 * 1024 * 1024
DEFAULT_MAX_DEPTH = 32

_DOCTYPE = re.compile(rb"<!DOCTYPE[^>\[]*(\[)?", re.IGNORECASE)
_ENTITY = re.compile(rb"<!ENTITY", re.IGNORECASE)
_PUBLIC_PLIST_DTD = (b"-//Apple//DTD PLIST 1.0//EN", b"-//Apple Computer//DTD PLIST 1.0//EN")


def _check_xml_prologue(data: bytes) -> None:
    head = data[:4096]
    if _ENTITY.search(data):
        raise ParseError("plist declares entities; refused")
    m = _DOCTYPE.search(head)
    if m is None:
        return
    if m.group(1):
        raise ParseError("plist DOCTYPE has an internal subset; refused")
    decl = head[m.start() : head.find(b">", m.start()) + 1]
    if b"SYSTEM" in decl.upper() and not any(p in decl for p in _PUBLIC_PLIST_DTD):
        raise ParseError("plist DOCTYPE names an external entity; refused")


_SCALARS = (bytes, int, float, datetime.datetime)  # bool is an int


def _check(obj: Any, limit: int, max_values: int) -> None:
    """Depth, size of the tree as the caller will see it, and only plist types."""
    stack = [(obj, 1)]
    seen = 0
    while stack:
        cur, d = stack.pop()
        seen += 1
        if seen > max_values:
            raise LimitExceeded("plist expands to more values than it has bytes (shared references)")
        if d > limit:
            raise LimitExceeded(f"plist nesting deeper than {limit}")
        if isinstance(cur, dict):
            for k, v in cur.items():
                if type(k) is not str:
                    raise ParseError("plist dictionary keys must be strings")
                if "\0" in k:
                    raise ParseError("plist strings must not contain NUL")
                stack.append((v, d + 1))
        elif isinstance(cur, list):
            stack.extend((v, d + 1) for v in cur)
        elif isinstance(cur, str):
            if "\0" in cur:
                raise ParseError("plist strings must not contain NUL")
        elif not isinstance(cur, _SCALARS):
            raise ParseError(f"plist holds a value of type {type(cur).__name__}; refused")


def loads(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> Any:
    """Parse plist bytes with limits; raise ParseError/LimitExceeded."""
    if not isinstance(data, (bytes, bytearray)):
        raise ParseError("plist body must be bytes")
    if len(data) > max_bytes:
        raise LimitExceeded(f"plist larger than {max_bytes} bytes")
    if not data.strip():
        raise ParseError("empty body")
    data = bytes(data)
    if not data.startswith(b"bplist"):
        _check_xml_prologue(data)
        obj = plist_xml.read(data, max_depth)  # the plain form devices send, checked as it is read
        if obj is not None:
            return obj
    try:
        obj = plistlib.loads(data)
    except (plistlib.InvalidFileException, ValueError, TypeError, KeyError, IndexError, OverflowError) as e:
        raise ParseError(f"malformed plist: {e}") from None
    except Exception as e:  # expat raises its own error classes
        raise ParseError(f"malformed plist: {type(e).__name__}: {e}") from None
    _check(obj, max_depth, len(data) + 1)
    return obj


def loads_dict(data: bytes, **kw: Any) -> dict:
    obj = loads(data, **kw)
    if not isinstance(obj, dict):
        raise ParseError("plist top level must be a dictionary")
    return obj


def dumps(obj: Any) -> bytes:
    """Serialize as an XML plist (what devices expect), keys sorted.

    The bytes of ``plistlib.dumps(obj, fmt=FMT_XML, sort_keys=True)``, about five times
    faster (see "Writing" below), with plistlib's errors: TypeError, OverflowError,
    ValueError for control characters, UnicodeEncodeError for lone surrogates.
    """
    out = [_HEADER]
    strs: list[str] = []
    try:
        _write(obj, 0, out, strs)
    except (_Unusual, TypeError):  # TypeError: sorting keys of mixed types
        return _plistlib_dumps(obj)
    inserted = "".join(strs).encode("latin-1")
    if len(inserted.translate(None, _SPECIAL)) != len(inserted):  # a string to escape or refuse
        if _CONTROL_BYTES(inserted) is not None:
            return _plistlib_dumps(obj)  # raises plistlib's ValueError
        out = [_HEADER]
        _write(_escaped(obj), 0, out, [])
    out.append(_FOOTER)
    return "".join(out).encode("latin-1")


# --- Writing ---------------------------------------------------------------------------------------
#
# plistlib writes line by line through a BytesIO, escaping and encoding every string. Here:
#
# * One pass appends str pieces to a list, joined and encoded once. dict, list, tuple, str,
#   bool, int, float, bytes, bytearray and datetime values of exactly those types are written
#   directly. Anything else - an instance of a subclass (OrderedDict, IntEnum, ...), an
#   unsupported type, a key that is not a str, an int out of plist range, a lone surrogate,
#   a control character in a key - raises ``_Unusual`` and the whole object goes to
#   plistlib, which writes it or raises its own error.
# * Keys: per indentation level, the sorted order of a dict's key tuple (its "shape") and the
#   escaped ``<key>`` lines are computed once and reused; payload dicts share a few shapes.
#   (A key equal to a cached one is written as that one: a str subclass key whose content
#   is the same string gets the same line, as it does from plistlib.)
# * String values are inserted unescaped and collected; at the end one bytes.translate over
#   all of them tells whether any needs escaping (\r & < >) or is refused (control
#   characters). Rarely so; then the object is written again as a copy with those values
#   escaped (keys are left alone, so the order does not change).
# * A non-ASCII string is inserted as its UTF-8 bytes read as Latin-1: the document holds
#   only code points < 256 and ``encode("latin-1")`` is a copy, not a transcoding.
# * <data>: the base64 of the whole value cut into plistlib's line width by a cached struct.
#
# tests/test_plist_writer.py compares the bytes with plistlib's over random structures and
# the profiles of the example city.

_HEADER = plistlib.PLISTHEADER.decode("ascii") + '<plist version="1.0">\n'
_FOOTER = "</plist>\n"
_CONTROL = bytes([*range(0, 9), 11, 12, *range(14, 32)])  # what plistlib refuses in a string
_SPECIAL = _CONTROL + b"\r&<>"  # ... or changes when escaping
_CONTROL_BYTES = re.compile(b"[" + re.escape(_CONTROL) + b"]").search
_NEEDS_ESCAPE = re.compile(r"[\r&<>]").search
_INT_MIN, _INT_END = -1 << 63, 1 << 64
_MAX_SHAPES = 4096  # cached key orders per level (bounded: dumps also sees device data)
_ROWS_PER_BLOCK = 64


class _Unusual(Exception):
    """Something the direct writer leaves to plistlib."""


def _plistlib_dumps(obj: Any) -> bytes:
    return plistlib.dumps(obj, fmt=plistlib.FMT_XML, sort_keys=True)


def _escape(text: str) -> str:
    """plistlib's escaping (control characters are refused before this is called)."""
    return (text.replace("\r\n", "\n").replace("\r", "\n")
            .replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))


def _latin1(text: str) -> str:
    """``text`` as its UTF-8 bytes read as Latin-1: encoded as Latin-1 with the document,
    they come out as the UTF-8 plistlib writes."""
    try:
        return text.encode("utf-8").decode("latin-1")
    except UnicodeEncodeError:  # a lone surrogate: plistlib raises
        raise _Unusual from None


class _Level:
    """Strings for one indentation level, and its cache of dict shapes."""

    __slots__ = ("ind", "inner", "dict_open", "dict_close", "dict_empty", "array_open",
                 "array_close", "array_empty", "data_width", "data_sep", "shapes")

    def __init__(self, level: int) -> None:
        ind = "\t" * level
        self.ind, self.inner = ind, ind + "\t"
        self.dict_open, self.dict_close, self.dict_empty = f"{ind}<dict>\n", f"{ind}</dict>\n", f"{ind}<dict/>\n"
        self.array_open, self.array_close, self.array_empty = (f"{ind}<array>\n", f"{ind}</array>\n",
                                                               f"{ind}<array/>\n")
        # plistlib wraps base64 at 76 columns less the indentation (a tab counting 8), at
        # least 16, in whole 4-character groups; <data>, the lines and </data> share ``ind``
        self.data_width = max(16, 76 - 8 * level) // 4 * 4
        self.data_sep = ("\n" + ind).encode("ascii")
        self.shapes: dict[tuple, list[tuple[str, str, str]]] = {}


_LEVELS: list[_Level] = [_Level(i) for i in range(40)]
_LEVELS_LOCK = threading.Lock()


def _level(level: int) -> _Level:
    try:
        return _LEVELS[level]
    except IndexError:
        with _LEVELS_LOCK:
            while level >= len(_LEVELS):
                _LEVELS.append(_Level(len(_LEVELS)))
        return _LEVELS[level]


def _plan(d: dict, lv: _Level) -> list[tuple[str, str, str]]:
    """(key, "<key>…</key>" line and the next line's indent, the key line alone), sorted by key."""
    plan = []
    inner = lv.inner
    for key in sorted(d):
        if type(key) is not str:
            raise _Unusual
        text = key if key.isascii() else _latin1(key)
        if len(text.encode("latin-1").translate(None, _SPECIAL)) != len(text):
            if _CONTROL_BYTES(text.encode("latin-1")) is not None:
                raise _Unusual  # plistlib raises ValueError
            text = _escape(text)
        plan.append((key, f"{inner}<key>{text}</key>\n{inner}", f"{inner}<key>{text}</key>\n"))
    return plan


@lru_cache(maxsize=512)
def _unpacker(width: int, rows: int) -> Callable[..., tuple[bytes, ...]]:
    return struct.Struct(f"{width}s" * rows).unpack_from


def _data(data: bytes | bytearray, level: int, out: list[str]) -> None:
    lv = _level(level)
    ind = lv.ind
    text = binascii.b2a_base64(data, newline=False)
    if not text:
        out.append(f"{ind}<data>\n{ind}</data>\n")
        return
    width = lv.data_width
    rows, rest = divmod(len(text), width)
    lines: list[bytes] = []
    blocks, last = divmod(rows, _ROWS_PER_BLOCK)
    if blocks:
        unpack = _unpacker(width, _ROWS_PER_BLOCK)
        for i in range(blocks):
            lines += unpack(text, i * _ROWS_PER_BLOCK * width)
    if last:
        lines += _unpacker(width, last)(text, blocks * _ROWS_PER_BLOCK * width)
    if rest:
        lines.append(text[rows * width:])
    out.append(f"{ind}<data>\n{ind}{lv.data_sep.join(lines).decode('ascii')}\n{ind}</data>\n")


def _date(d: datetime.datetime) -> str:
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (d.year, d.month, d.day, d.hour, d.minute, d.second)


def _write(value: Any, level: int, out: list[str], strs: list[str]) -> None:
    t = type(value)
    if t is dict:
        _dict(value, level, out, strs)
    elif t is list or t is tuple:
        _array(value, level, out, strs)
    elif t is str:
        if not value.isascii():
            value = _latin1(value)
        strs.append(value)
        out.append(f"{_level(level).ind}<string>{value}</string>\n")
    elif t is bool:
        out.append(f"{_level(level).ind}<true/>\n" if value else f"{_level(level).ind}<false/>\n")
    elif t is int:
        if not _INT_MIN <= value < _INT_END:
            raise _Unusual  # plistlib raises OverflowError
        out.append(f"{_level(level).ind}<integer>{value}</integer>\n")
    elif t is bytes or t is bytearray:
        _data(value, level, out)
    elif t is float:
        out.append(f"{_level(level).ind}<real>{value!r}</real>\n")
    elif t is datetime.datetime:
        out.append(f"{_level(level).ind}<date>{_date(value)}</date>\n")
    else:
        raise _Unusual


def _dict(d: dict, level: int, out: list[str], strs: list[str],
          _min: int = _INT_MIN, _end: int = _INT_END) -> None:
    try:
        lv = _LEVELS[level]
    except IndexError:
        lv = _level(level)
    if not d:
        out.append(lv.dict_empty)
        return
    shape = tuple(d)
    plan = lv.shapes.get(shape)
    if plan is None:
        plan = _plan(d, lv)
        if len(lv.shapes) < _MAX_SHAPES:
            lv.shapes[shape] = plan
    deeper = level + 1
    append = out.append
    collect = strs.append
    append(lv.dict_open)
    for key, key_value, key_line in plan:
        value = d[key]
        t = type(value)
        if t is str:
            if not value.isascii():
                value = _latin1(value)
            collect(value)
            append(f"{key_value}<string>{value}</string>\n")
        elif t is bool:
            append(f"{key_value}<true/>\n" if value else f"{key_value}<false/>\n")
        elif t is int and _min <= value < _end:
            append(f"{key_value}<integer>{value}</integer>\n")
        elif t is dict:
            append(key_line)
            _dict(value, deeper, out, strs)
        elif t is list:
            append(key_line)
            _array(value, deeper, out, strs)
        else:
            append(key_line)
            _write(value, deeper, out, strs)
    append(lv.dict_close)


def _array(array: list | tuple, level: int, out: list[str], strs: list[str]) -> None:
    try:
        lv = _LEVELS[level]
    except IndexError:
        lv = _level(level)
    if not array:
        out.append(lv.array_empty)
        return
    inner = lv.inner
    deeper = level + 1
    append = out.append
    append(lv.array_open)
    for value in array:
        t = type(value)
        if t is str:
            if not value.isascii():
                value = _latin1(value)
            strs.append(value)
            append(f"{inner}<string>{value}</string>\n")
        elif t is dict:
            _dict(value, deeper, out, strs)
        else:
            _write(value, deeper, out, strs)
    append(lv.array_close)


def _escaped(value: Any) -> Any:
    """A copy of ``value`` (exact containers only) with its string values escaped; keys stay."""
    t = type(value)
    if t is str:
        return _escape(value) if _NEEDS_ESCAPE(value) is not None else value
    if t is dict:
        return {k: _escaped(v) for k, v in value.items()}
    if t is list or t is tuple:
        return [_escaped(v) for v in value]
    return value
