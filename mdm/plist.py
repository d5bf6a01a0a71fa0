"""Safe property-list parsing.

Devices send XML plists. ``plistlib`` uses expat, which expands internal
entities, so an entity-expansion ("billion laughs") body could blow up memory.
We refuse any DOCTYPE with an internal subset or ENTITY declaration, any
external entity, bodies over a size limit and nesting beyond a depth limit,
before and after parsing. Binary plists are accepted (iOS never sends them for
check-in, but tools do) under the same limits.
"""

from __future__ import annotations

import plistlib
import re
from typing import Any

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


def _depth(obj: Any, limit: int) -> None:
    stack = [(obj, 1)]
    while stack:
        cur, d = stack.pop()
        if d > limit:
            raise LimitExceeded(f"plist nesting deeper than {limit}")
        if isinstance(cur, dict):
            stack.extend((v, d + 1) for v in cur.values())
        elif isinstance(cur, list):
            stack.extend((v, d + 1) for v in cur)


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
        # cheap pre-check on depth: count of opening container tags bounds depth
    try:
        obj = plistlib.loads(data)
    except (plistlib.InvalidFileException, ValueError, TypeError, KeyError, IndexError, OverflowError) as e:
        raise ParseError(f"malformed plist: {e}") from None
    except Exception as e:  # expat raises its own error classes
        raise ParseError(f"malformed plist: {type(e).__name__}: {e}") from None
    _depth(obj, max_depth)
    return obj


def loads_dict(data: bytes, **kw: Any) -> dict:
    obj = loads(data, **kw)
    if not isinstance(obj, dict):
        raise ParseError("plist top level must be a dictionary")
    return obj


def dumps(obj: Any) -> bytes:
    """Serialize as an XML plist (what devices expect)."""
    return plistlib.dumps(obj, fmt=plistlib.FMT_XML, sort_keys=True)
