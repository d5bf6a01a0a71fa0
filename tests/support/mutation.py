"""Mutators for the fuzz tests, driven by hypothesis so failures shrink to a short list of edits.

Three levels, each a strategy of edit lists plus a function applying them:

- bytes: flip, set, delete, insert, duplicate, truncate;
- plist text: insert or replace with plist tokens (tags, odd values, entity and DOCTYPE
  fragments) at random places, so mutated fixtures stay close to well-formed;
- DER: edit one TLV of the tree (new contents, new tag, drop, duplicate, swap, wrong
  length, huge integer) and re-encode with correct lengths around it, so the result
  still parses as DER and the edit reaches the code behind the outer parser.

And ``odd_values``: plist values a device could send that no real one does (long, empty,
RTL and emoji text, control characters, NaN, 64-bit edges, binary, far dates, nesting).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from hypothesis import strategies as st

# --- bytes --------------------------------------------------------------------------------------

BYTE_OPS = ("flip", "set", "delete", "insert", "duplicate", "truncate")

byte_edits = st.lists(
    st.tuples(st.sampled_from(BYTE_OPS), st.integers(0, 1 << 20), st.integers(0, 255), st.binary(max_size=24)),
    min_size=1, max_size=6,
)


def apply_byte_edits(data: bytes, edits) -> bytes:
    out = bytearray(data)
    for op, pos, value, blob in edits:
        i = pos % (len(out) + 1)
        if op == "flip" and out:
            out[i % len(out)] ^= 1 << (value % 8)
        elif op == "set" and out:
            out[i % len(out)] = value
        elif op == "delete":
            del out[i : i + 1 + value % 16]
        elif op == "insert":
            out[i:i] = blob
        elif op == "duplicate":
            out[i:i] = out[i : i + 1 + value]
        elif op == "truncate":
            del out[i:]
    return bytes(out)


# --- plist text ---------------------------------------------------------------------------------

PLIST_TOKENS = (
    b"<dict>", b"</dict>", b"<dict/>", b"<array>", b"</array>", b"<array/>", b"<key>", b"</key>",
    b"<key>UDID</key>", b"<key>MessageType</key>", b"<key>Status</key>", b"<key>CommandUUID</key>",
    b"<string>", b"</string>", b"<string></string>", b"<true/>", b"<false/>", b"<data>", b"</data>",
    b"<data>!!not base64!!</data>", b"<data>AAAA</data>", b"<integer>", b"</integer>",
    b"<integer>" + b"9" * 5000 + b"</integer>", b"<integer>-18446744073709551617</integer>",
    b"<integer>0x10</integer>", b"<real>nan</real>", b"<real>-inf</real>", b"<real>1e400</real>",
    b"<real>1.5.5</real>", b"<date>2024-13-45T99:99:99Z</date>", b"<date>0000-01-01T00:00:00Z</date>",
    b"<date>yesterday</date>", b"<plist>", b"</plist>", b'<plist version="9">', b"<unknown/>",
    b"&amp;", b"&lt;", b"&#0;", b"&#xD800;", b"&#x1F600;", b"&bogus;", b"<![CDATA[x]]>", b"]]>",
    b"<!-- c -->", b"<?pi x?>", b"<!DOCTYPE plist [<!ELEMENT a ANY>]>",
    b'<!ENTITY x "y">', b'<!DOCTYPE plist SYSTEM "file:///etc/passwd">', b"\xef\xbb\xbf",
    b"\xff\xfe", b"\xc3\x28", b"\x00", b"\r\n", b"\t" * 40, "é".encode(), "\u202e".encode(),
)

plist_edits = st.lists(
    st.tuples(st.sampled_from(("insert", "replace", "bytes")), st.integers(0, 1 << 20),
              st.sampled_from(PLIST_TOKENS), byte_edits),
    min_size=1, max_size=5,
)


def apply_plist_edits(data: bytes, edits) -> bytes:
    out = data
    for op, pos, token, raw in edits:
        if op == "bytes":
            out = apply_byte_edits(out, raw)
            continue
        # edit at a tag boundary most of the time: the result stays close to a plist
        starts = [i for i in range(len(out)) if out[i : i + 1] == b"<"] or [0]
        i = starts[pos % len(starts)] if pos % 4 else pos % (len(out) + 1)
        if op == "insert":
            out = out[:i] + token + out[i:]
        else:
            end = out.find(b">", i)
            out = out[:i] + token + (out[end + 1 :] if end >= 0 else b"")
    return out


# --- DER ----------------------------------------------------------------------------------------


@dataclass
class Node:
    tag: int
    content: bytes = b""
    children: list["Node"] | None = None  # constructed (or an OCTET STRING holding DER)
    wrapped: bool = False  # a primitive OCTET/BIT STRING whose contents parsed as DER
    length_delta: int = 0  # a deliberate wrong length, applied when encoding

    def encode(self) -> bytes:
        if self.children is not None:
            body = b"".join(c.encode() for c in self.children)
            if self.tag == 0x03 and self.wrapped:
                body = b"\x00" + body
        else:
            body = self.content
        return bytes([self.tag]) + _length(max(0, len(body) + self.length_delta)) + body


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _parse(d: bytes, depth: int = 0) -> list[Node] | None:
    """Definite-length TLVs covering all of ``d``, or None."""
    out, pos = [], 0
    while pos < len(d):
        if len(d) - pos < 2 or d[pos] & 0x1F == 0x1F:
            return None
        tag, n, start = d[pos], d[pos + 1], pos + 2
        if n & 0x80:
            k = n & 0x7F
            if k == 0 or k > 4 or len(d) - start < k:
                return None
            n, start = int.from_bytes(d[start : start + k], "big"), start + k
        if len(d) - start < n:
            return None
        content = d[start : start + n]
        node = Node(tag, content)
        if depth < 40:
            if tag & 0x20:
                node.children = _parse(content, depth + 1)
                if node.children is None:
                    return None
            elif tag == 0x04 and content[:1] in (b"\x30", b"\x31"):
                inner = _parse(content, depth + 1)
                if inner is not None:
                    node.children, node.wrapped = inner, True
            elif tag == 0x03 and content[:2] in (b"\x00\x30",):
                inner = _parse(content[1:], depth + 1)
                if inner is not None:
                    node.children, node.wrapped = inner, True
        out.append(node)
        pos = start + n
    return out


def der_tree(data: bytes) -> Node | None:
    nodes = _parse(data)
    return nodes[0] if nodes and len(nodes) == 1 else None


def _walk(node: Node, parent: Node | None, out: list) -> None:
    out.append((node, parent))
    for c in node.children or ():
        _walk(c, node, out)


DER_OPS = ("contents", "tag", "drop", "duplicate", "swap", "length", "empty", "integer", "insert", "bytes")

der_edits = st.lists(
    st.tuples(st.sampled_from(DER_OPS), st.integers(0, 1 << 20), st.integers(-3, 300), st.binary(max_size=40),
              byte_edits),
    min_size=1, max_size=4,
)

_BIG = (0, -1, 1 << 64, -(1 << 200), (1 << 4096) - 1)


def _int_bytes(v: int) -> bytes:
    return v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big", signed=True)


def apply_der_edits(data: bytes, edits) -> bytes:
    """Edit DER structurally; bytes that are not DER get byte edits instead."""
    root = der_tree(data)
    if root is None:
        return apply_byte_edits(data, [e for _, _, _, _, raw in edits for e in raw])
    for op, pos, value, blob, raw in edits:
        nodes: list = []
        _walk(root, None, nodes)
        node, parent = nodes[pos % len(nodes)]
        siblings = parent.children if parent is not None else None
        if op == "contents":
            node.children, node.content = None, blob
        elif op == "tag":
            node.tag = value % 256 if value % 256 & 0x1F != 0x1F else 0x04
        elif op == "drop" and siblings is not None:
            siblings.remove(node)
        elif op == "duplicate" and siblings is not None:
            siblings.insert(siblings.index(node), Node(node.tag, _body(node)))
        elif op == "swap" and siblings is not None and len(siblings) > 1:
            i = siblings.index(node)
            j = (i + 1 + value % (len(siblings) - 1)) % len(siblings)
            siblings[i], siblings[j] = siblings[j], siblings[i]
        elif op == "length":
            node.length_delta = value if value else -1
        elif op == "empty":
            node.children, node.content = ([] if node.tag & 0x20 else None), b""
        elif op == "integer":
            node.tag, node.children, node.content = 0x02, None, _int_bytes(_BIG[value % len(_BIG)])
        elif op == "insert":
            target = node if node.children is not None else parent
            if target is not None and target.children is not None:
                target.children.insert(value % (len(target.children) + 1), Node(blob[:1][0] if blob else 0x05,
                                                                                blob[1:]))
        elif op == "bytes":
            node.children, node.content = None, apply_byte_edits(_body(node), raw)
    return root.encode()


def _body(node: Node) -> bytes:
    enc = node.encode()
    head = 2 if enc[1] < 0x80 else 2 + (enc[1] & 0x7F)
    return enc[head:]


# --- odd plist values -----------------------------------------------------------------------------

odd_text = st.one_of(
    st.text(max_size=24),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=60, max_size=400),
    st.sampled_from(["", " ", "A" * 65, "A" * 256, "x" * 5000, "\u202e", "%s%n", "' OR 1=1 --",
                     "<script>", "../../etc/passwd", "😀" * 70, "\x01\x1f", "NaN", "-1", "Idle"]),
)
odd_scalars = st.one_of(
    odd_text, st.booleans(), st.integers(-(1 << 63), (1 << 64) - 1),
    st.floats(allow_nan=True, allow_infinity=True), st.binary(max_size=300),
    st.datetimes(dt.datetime(1900, 1, 1), dt.datetime(9999, 1, 1)),
)
odd_values = st.recursive(odd_scalars, lambda kids: st.one_of(
    st.lists(kids, max_size=4), st.dictionaries(odd_text, kids, max_size=4)), max_leaves=12)


def encode_plist(obj, binary: bool) -> bytes | None:
    """XML (what iPads send) or binary; None when neither can say ``obj``."""
    import plistlib

    for fmt in ((plistlib.FMT_BINARY,) if binary else (plistlib.FMT_XML, plistlib.FMT_BINARY)):
        try:
            return plistlib.dumps(obj, fmt=fmt, sort_keys=False)
        except (TypeError, ValueError, OverflowError):
            continue
    return None
