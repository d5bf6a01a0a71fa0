"""Check payloads and commands against Apple's published schema (derived table).

``check_payload`` accepts a single payload dictionary or a whole
``Configuration`` profile (then every item of its ``PayloadContent`` is checked
as well). ``check_command`` accepts ``{"RequestType": ..., ...}`` or the full
``{"CommandUUID": ..., "Command": {...}}`` envelope.

Severity: things iOS rejects or does not know are errors (unknown key, wrong
type, missing required key, value outside the allowed list/range/format, key
not available or removed on iOS, a supervised-only *payload* on an unsupervised
device). Things iOS ignores or will stop honouring are warnings (key
introduced after the target iOS version, deprecated key, supervised-only *key*
on an unsupervised device).
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

Path = tuple[str | int, ...]

_TYPE_NAMES = {"s": "string", "i": "integer", "r": "real", "b": "boolean", "D": "data",
               "t": "date", "a": "array", "d": "dictionary", "*": "any"}


@dataclass(frozen=True)
class Issue:
    severity: str  # "error" | "warning"
    code: str  # unknown_key, wrong_type, missing_required, bad_value, not_on_ios, removed,
    #            introduced_later, deprecated, supervised_only, unknown_type
    where: str  # PayloadType or RequestType the issue belongs to
    path: Path  # key path inside that payload/command
    message: str

    @property
    def key(self) -> str:
        return _fmt(self.path)

    def __str__(self) -> str:
        return f"{self.severity}: {self.where}: {self.key or '(top)'}: {self.message}"


def _fmt(path: Path) -> str:
    out = ""
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        elif "." in str(p) or " " in str(p):
            out += f'["{p}"]'
        else:
            out += f".{p}" if out else str(p)
    return out


@cache
def schema() -> dict:
    """The derived table shipped as ``profiles/schema/apple_schema.json``."""
    text = resources.files("profiles.schema").joinpath("apple_schema.json").read_text(encoding="utf-8")
    return json.loads(text)


def version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in str(v).split(".") if p.isdigit())


def _type_ok(value: Any, t: str) -> bool:
    if t == "s":
        return isinstance(value, str)
    if t == "i":
        return isinstance(value, int) and not isinstance(value, bool)
    if t == "r":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t == "b":
        return isinstance(value, bool)
    if t == "D":
        return isinstance(value, (bytes, bytearray))
    if t == "t":
        return isinstance(value, dt.datetime)
    if t == "a":
        return isinstance(value, list)
    if t == "d":
        return isinstance(value, dict)
    return True


@dataclass
class _Ctx:
    where: str
    supervised: bool
    ios: tuple[int, ...]
    issues: list[Issue] = field(default_factory=list)

    def add(self, severity: str, code: str, path: Path, message: str) -> None:
        self.issues.append(Issue(severity, code, self.where, path, message))


def _resolve(sub: Any) -> list | None:
    if isinstance(sub, str):
        return schema()["defs"][sub]
    return sub


def _availability(ios: dict | None, path: Path, ctx: _Ctx, *, payload_level: bool = False) -> bool:
    """Report what this node itself declares; False when the node is unusable on iOS."""
    if not ios:
        return True
    what = "payload" if payload_level else "key"
    intro = ios.get("i")
    if intro == "n/a":
        ctx.add("error", "not_on_ios", path, f"{what} is not available on iOS")
        return False
    if intro and version_tuple(intro) > ctx.ios:
        ctx.add("warning", "introduced_later", path,
                f"{what} needs iOS {intro}; devices on older iOS ignore it")
    if ios.get("x") and version_tuple(ios["x"]) <= ctx.ios:
        ctx.add("error", "removed", path, f"{what} was removed in iOS {ios['x']}")
    elif ios.get("d") and version_tuple(ios["d"]) <= ctx.ios:
        ctx.add("warning", "deprecated", path, f"{what} is deprecated since iOS {ios['d']}")
    if ios.get("s") and not ctx.supervised:
        sev = "error" if payload_level else "warning"
        ctx.add(sev, "supervised_only", path, f"{what} requires a supervised device")
    return True


def _check_value(value: Any, node: dict, path: Path, ctx: _Ctx) -> None:
    if not _availability(node.get("ios"), path, ctx):
        return
    t = node.get("t", "*")
    if not _type_ok(value, t):
        ctx.add("error", "wrong_type", path,
                f"expected {_TYPE_NAMES.get(t, t)}, got {type(value).__name__}")
        return
    if "e" in node and not isinstance(value, (list, dict)) and value not in node["e"]:
        ctx.add("error", "bad_value", path, f"{value!r} is not one of {node['e']!r}")
    if "min" in node and isinstance(value, (int, float)) and value < node["min"]:
        ctx.add("error", "bad_value", path, f"{value!r} is below the minimum {node['min']}")
    if "max" in node and isinstance(value, (int, float)) and value > node["max"]:
        ctx.add("error", "bad_value", path, f"{value!r} is above the maximum {node['max']}")
    if "f" in node and isinstance(value, str) and not re.search(node["f"], value):
        ctx.add("error", "bad_value", path, f"{value!r} does not match {node['f']}")
    sub = _resolve(node.get("sub"))
    if t == "d" and sub:
        _check_dict(value, sub, path, ctx)
    elif t == "a" and sub:
        _check_array(value, sub, path, ctx)


def _check_dict(value: dict, nodes: list, path: Path, ctx: _Ctx, *, skip: frozenset = frozenset()) -> None:
    known = {n["k"]: n for n in nodes}
    wildcard = known.get("ANY")
    for key, item in value.items():
        if key in skip:
            continue
        node = known.get(key) if key != "ANY" else None
        if node is None:
            if wildcard is not None:
                _check_value(item, wildcard, path + (key,), ctx)
                continue
            near = difflib.get_close_matches(str(key), [k for k in known if k != "ANY"], n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            ctx.add("error", "unknown_key", path + (key,), f"unknown key {key!r}{hint}")
            continue
        _check_value(item, node, path + (key,), ctx)
    for n in nodes:
        if n.get("r") and n["k"] != "ANY" and n["k"] not in value:
            ctx.add("error", "missing_required", path + (n["k"],), f"required key {n['k']!r} is missing")


def _discriminates(item: Any, alt: dict) -> bool:
    """An alternative matches a dict item when its single-valued keys agree (Settings' Item)."""
    if not isinstance(item, dict):
        return False
    fixed = [n for n in _resolve(alt.get("sub")) or [] if len(n.get("e", ())) == 1]
    return bool(fixed) and all(item.get(n["k"]) == n["e"][0] for n in fixed)


def _check_array(value: list, items: list, path: Path, ctx: _Ctx) -> None:
    for i, item in enumerate(value):
        if len(items) == 1:
            _check_value(item, items[0], path + (i,), ctx)
            continue
        match = [alt for alt in items if _discriminates(item, alt)]
        if len(match) != 1:
            names = [alt["k"] for alt in items]
            ctx.add("error", "bad_value", path + (i,), f"item matches none of {names}")
            continue
        _check_value(item, match[0], path + (i,), ctx)


def _payload_keys(ptype: str) -> list:
    table = schema()
    own = table["payloads"][ptype]["keys"]
    names = {n["k"] for n in own}
    return own + [n for n in table["common"] if n["k"] not in names]


def _check_one_payload(payload: dict, ctx: _Ctx, prefix: Path) -> None:
    ptype = payload.get("PayloadType")
    entry = schema()["payloads"].get(ptype) if isinstance(ptype, str) else None
    if entry is None:
        ctx.add("error", "unknown_type", prefix + ("PayloadType",), f"unknown PayloadType {ptype!r}")
        return
    where, ctx.where = ctx.where, ptype
    if _availability(entry.get("ios"), prefix, ctx, payload_level=True):
        _check_dict(payload, _payload_keys(ptype), prefix, ctx)
    ctx.where = where


def check_payload(payload: dict, *, supervised: bool, ios: str = "17.0") -> list[Issue]:
    """Issues of a payload dict, or of a Configuration profile and all its payloads."""
    ctx = _Ctx("Configuration", supervised, version_tuple(ios))
    if not isinstance(payload, dict):
        ctx.add("error", "wrong_type", (), "a payload must be a dictionary")
        return ctx.issues
    if payload.get("PayloadType") != "Configuration":
        _check_one_payload(payload, ctx, ())
        return ctx.issues
    toplevel = schema()["toplevel"]
    if payload.get("IsEncrypted") is True and "EncryptedPayloadContent" in payload:
        toplevel = [n for n in toplevel if n["k"] != "PayloadContent"]  # not needed when encrypted
    _check_dict(payload, toplevel, (), ctx, skip=frozenset({"PayloadContent"}))
    content = payload.get("PayloadContent")
    if not isinstance(content, list):
        if "PayloadContent" in payload:
            ctx.add("error", "wrong_type", ("PayloadContent",), "expected array")
        return ctx.issues
    uuids: dict[str, int] = {}
    for i, item in enumerate(content):
        where = ("PayloadContent", i)
        if not isinstance(item, dict):
            ctx.add("error", "wrong_type", where, "expected dictionary")
            continue
        u = item.get("PayloadUUID")
        if u in uuids:
            ctx.add("error", "bad_value", where + ("PayloadUUID",),
                    f"PayloadUUID {u} is also used by PayloadContent[{uuids[u]}]")
        uuids.setdefault(u, i)
        _check_one_payload(item, ctx, where)
    return ctx.issues


def check_command(cmd: dict, *, supervised: bool = True, ios: str = "17.0") -> list[Issue]:
    """Issues of a command ``{"RequestType": ...}`` (or its ``Command`` envelope)."""
    ctx = _Ctx("Command", supervised, version_tuple(ios))
    if isinstance(cmd, dict) and isinstance(cmd.get("Command"), dict):
        extra = set(cmd) - {"Command", "CommandUUID"}
        for k in sorted(extra):
            ctx.add("error", "unknown_key", (k,), f"unknown envelope key {k!r}")
        cmd = cmd["Command"]
    rtype = cmd.get("RequestType") if isinstance(cmd, dict) else None
    entry = schema()["commands"].get(rtype) if isinstance(rtype, str) else None
    if entry is None:
        ctx.add("error", "unknown_type", ("RequestType",), f"unknown RequestType {rtype!r}")
        return ctx.issues
    ctx.where = rtype
    if _availability(entry.get("ios"), (), ctx, payload_level=True):
        _check_dict(cmd, entry["keys"], (), ctx, skip=frozenset({"RequestType"}))
    return ctx.issues


def errors(issues: list[Issue]) -> list[Issue]:
    return [i for i in issues if i.severity == "error"]
