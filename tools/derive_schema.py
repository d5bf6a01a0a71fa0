"""Derive the compact Apple schema table the product carries.

Reads Apple's published device-management YAML (``mdm/profiles/*.yaml`` and
``mdm/commands/*.yaml`` of github.com/apple/device-management, MIT licensed)
and writes ``profiles/schema/apple_schema.json``: for every payload type and
every command RequestType, the keys with their type, presence, allowed values,
ranges, formats and iOS availability (introduced / deprecated / removed /
supervised-only), nested subkeys included. Descriptions, titles and other
platforms are dropped to keep the table small.

Node format (all keys short, absent when unset)::

    {"k": name, "t": type, "r": 1 if required, "e": [allowed values],
     "min": n, "max": n, "f": regex, "ios": {"i": introduced, "d": deprecated,
     "x": removed, "s": supervised (bool)}, "sub": [nodes] | "<def name>"}

Types: s string, i integer, r real, b boolean, D data, t date, a array,
d dictionary, * any. Recursive structures (the Home Screen Layout's folders)
are emitted once under ``defs`` and referenced by name.

Usage::

    python tools/derive_schema.py [--source DIR] [--out FILE] [--check]

``--check`` exits 1 when FILE differs from what SOURCE would produce.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = Path("/work/shared/apple-device-management")
DEFAULT_OUT = ROOT / "profiles" / "schema" / "apple_schema.json"

TYPES = {
    "<string>": "s", "<integer>": "i", "<real>": "r", "<boolean>": "b", "<data>": "D",
    "<date>": "t", "<array>": "a", "<dictionary>": "d", "<any>": "*",
}
SPECIAL = {"CommonPayloadKeys": "common", "TopLevel": "toplevel"}


def _ios(supported: dict | None, *, payload_level: bool = False) -> dict:
    """The iOS part of a supportedOS block, compacted."""
    if not supported:
        return {}
    ios = supported.get("iOS")
    if ios is None:
        # at payload level an OS that is not listed is not supported;
        # at key level a missing OS inherits from the payload
        return {"i": "n/a"} if payload_level else {}
    out: dict = {}
    for src, dst in (("introduced", "i"), ("deprecated", "d"), ("removed", "x")):
        if src in ios:
            out[dst] = str(ios[src])
    if "supervised" in ios:
        out["s"] = bool(ios["supervised"])
    return out


class Deriver:
    def __init__(self) -> None:
        self.defs: dict[str, list] = {}
        self._recursive: set[int] = set()
        self._def_names: dict[int, str] = {}

    def _find_cycles(self, keys: list, stack: tuple[int, ...] = ()) -> None:
        if id(keys) in stack:
            self._recursive.add(id(keys))
            return
        for k in keys or []:
            sub = k.get("subkeys")
            if sub:
                self._find_cycles(sub, stack + (id(keys),))

    def keys(self, keys: list, owner: str) -> list:
        # ids are only meaningful while this document is alive: reset per document
        self._recursive, self._def_names = set(), {}
        self._find_cycles(keys)
        return self._nodes(keys, owner)

    def _nodes(self, keys: list, owner: str) -> list:
        return [self._node(k, owner) for k in keys or []]

    def _sub(self, sub: list, owner: str):
        if id(sub) not in self._recursive:
            return self._nodes(sub, owner)
        name = self._def_names.get(id(sub))
        if name is None:
            name = f"{owner}#{sub[0]['key']}"
            self._def_names[id(sub)] = name
            self.defs[name] = []  # placeholder breaks the recursion
            self.defs[name] = self._nodes(sub, owner)
        return name

    def _node(self, k: dict, owner: str) -> dict:
        node: dict = {"k": str(k["key"]), "t": TYPES.get(k.get("type"), "*")}
        if k.get("presence") == "required":
            node["r"] = 1
        if "rangelist" in k:
            node["e"] = list(k["rangelist"])
        rng = k.get("range") or {}
        if "min" in rng:
            node["min"] = rng["min"]
        if "max" in rng:
            node["max"] = rng["max"]
        if k.get("format"):
            node["f"] = str(k["format"])
        ios = _ios(k.get("supportedOS"))
        if ios:
            node["ios"] = ios
        if k.get("subkeys"):
            node["sub"] = self._sub(k["subkeys"], owner)
        return node


def _load(path: Path) -> dict:
    with path.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _merge_keys(old: list, new: list) -> list:
    """Variants of one payload type (com.apple.MCX(...)) share one key table."""
    names = {n["k"] for n in old}
    return old + [n for n in new if n["k"] not in names]


def _provenance(source: Path) -> dict:
    out = {"repository": "https://github.com/apple/device-management", "license": "MIT"}
    prov = source / "PROVENANCE.md"
    if prov.exists():
        text = prov.read_text(encoding="utf-8")
        commit = re.search(r"Commit:\s*([0-9a-f]{40})", text)
        release = re.search(r'Commit:[^\n]*"([^"]+)"', text)
        if commit:
            out["commit"] = commit.group(1)
        if release:
            out["release"] = release.group(1)
    return out


def derive(source: Path) -> dict:
    d = Deriver()
    table: dict = {"source": _provenance(source), "common": [], "toplevel": [],
                   "payloads": {}, "commands": {}, "defs": d.defs}
    for f in sorted((source / "mdm" / "profiles").glob("*.yaml")):
        doc = _load(f)
        ptype = doc["payload"]["payloadtype"]
        keys = d.keys(doc.get("payloadkeys") or [], ptype)
        if ptype in SPECIAL:
            table[SPECIAL[ptype]] = keys
            continue
        entry = table["payloads"].setdefault(
            ptype, {"ios": _ios(doc["payload"].get("supportedOS"), payload_level=True), "keys": []})
        entry["keys"] = _merge_keys(entry["keys"], keys)
    for f in sorted((source / "mdm" / "commands").glob("*.yaml")):
        doc = _load(f)
        rtype = doc["payload"]["requesttype"]
        table["commands"][rtype] = {
            "ios": _ios(doc["payload"].get("supportedOS"), payload_level=True),
            "keys": d.keys(doc.get("payloadkeys") or [], rtype),
        }
    return table


def dumps(table: dict) -> str:
    return json.dumps(table, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true", help="fail if OUT is out of date")
    args = ap.parse_args(argv)
    text = dumps(derive(args.source))
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is out of date; run tools/derive_schema.py", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    table = json.loads(text)
    print(f"wrote {args.out}: {len(table['payloads'])} payload types, "
          f"{len(table['commands'])} commands, {len(text) // 1024} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
