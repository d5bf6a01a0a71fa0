"""Blueprint inheritance: a child document (a school) over its parent (the city).

Rules, applied recursively:

* mappings merge key by key (``restrictions: {pupil: {camera: false}}`` changes
  one restriction and keeps the others);
* lists **replace** the inherited list (``apps: [...]`` is the school's whole
  app list);
* ``key+: [...]`` **appends** to the inherited list instead (``apps+: [...]``
  adds the school's apps to the city's; works at any depth, e.g.
  ``web_filter: {pupil: {denied_urls+: [...]}}``);
* scalars override;
* ``key: null`` (or ``~``) removes the inherited value so the default applies
  (``exam: {pupil: null}`` switches the city's exam app off for one school).

Marks follow the values: a key that came from the parent still points at the
parent's file and line.
"""

from __future__ import annotations

from typing import Any

from profiles.blueprint.errors import BlueprintError, Problem, format_key
from profiles.blueprint.source import Doc, MarkTree

APPEND = "+"


def _shift(tree: MarkTree, offset: int) -> MarkTree:
    return MarkTree(tree.mark, {i + offset: t for i, t in tree.children.items()})


def _merge(parent: dict, ptree: MarkTree, child: dict, ctree: MarkTree, path: tuple,
           problems: list[Problem]) -> tuple[dict, MarkTree]:
    out = dict(parent)
    tree = MarkTree(ctree.mark or ptree.mark, dict(ptree.children))
    for raw, value in child.items():
        cmark = ctree.children.get(raw, MarkTree())
        line = cmark.mark.line if cmark.mark else None
        file = cmark.mark.file if cmark.mark else None
        if raw.endswith(APPEND) and len(raw) > 1:
            key = raw[:-1]
            if key in child:
                problems.append(Problem(file, line, format_key(path + (raw,)),
                                        f"both {key!r} and {raw!r} given; use one"))
                continue
            inherited = out.get(key, [])
            if not isinstance(value, list) or not isinstance(inherited, list):
                what = "the inherited value" if not isinstance(inherited, list) else "the value"
                problems.append(Problem(file, line, format_key(path + (raw,)),
                                        f"{raw!r} appends to a list, but {what} is not a list"))
                continue
            out[key] = inherited + value
            old = tree.children.get(key, MarkTree())
            new = MarkTree(cmark.mark, dict(old.children))
            new.children.update(_shift(cmark, len(inherited)).children)
            tree.children[key] = new
        elif value is None:
            out.pop(raw, None)
            tree.children.pop(raw, None)
        elif isinstance(value, dict) and isinstance(out.get(raw), dict):
            out[raw], tree.children[raw] = _merge(
                out[raw], tree.children.get(raw, MarkTree()), value, cmark, path + (raw,), problems)
        else:
            out[raw] = value
            tree.children[raw] = cmark
    return out, tree


def merge(parent: Doc, child: Doc) -> Doc:
    """``child`` over ``parent``; raises BlueprintError naming the child's file and line."""
    problems: list[Problem] = []
    data, tree = _merge(parent.data, parent.marks, child.data, child.marks, (), problems)
    if problems:
        raise BlueprintError(problems)
    return Doc(child.file, data, tree)


def strip_appends(doc: Doc) -> list[Problem]:
    """``key+`` has nothing to append to in a document without a parent."""
    problems: list[Problem] = []

    def walk(value: Any, tree: MarkTree, path: tuple) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                sub = tree.children.get(k, MarkTree())
                if isinstance(k, str) and k.endswith(APPEND) and len(k) > 1:
                    m = sub.mark
                    problems.append(Problem(m.file if m else doc.file, m.line if m else None,
                                            format_key(path + (k,)),
                                            f"{k!r} appends to an inherited list, but this file "
                                            f"inherits from nothing; write {k[:-1]!r}"))
                walk(v, sub, path + (k,))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, tree.children.get(i, MarkTree()), path + (i,))

    walk(doc.data, doc.marks, ())
    return problems
