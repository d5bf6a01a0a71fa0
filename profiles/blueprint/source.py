"""YAML documents that remember where every key came from (file and line).

PyYAML's composer keeps a start mark on every node; we build the Python data
ourselves from the node graph and keep a parallel ``MarkTree`` so that any key
path of a (merged) blueprint maps back to the file and line that set it.
Duplicate keys, which PyYAML silently collapses, are reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from profiles.blueprint.errors import BlueprintError, Problem, format_key

MAX_DEPTH = 40
#: libyaml's parser when PyYAML was built with it (same nodes and marks, ~10x faster)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class Mark:
    file: str
    line: int  # 1-based


@dataclass
class MarkTree:
    """Marks for a value (``mark``) and for the keys/indices below it (``children``)."""

    mark: Mark | None = None
    children: dict[Any, MarkTree] = field(default_factory=dict)

    def lookup(self, path: tuple) -> Mark | None:
        """The mark of ``path``, or of its deepest ancestor that has one."""
        node, best = self, self.mark
        for part in path:
            node = node.children.get(part)
            if node is None:
                break
            best = node.mark or best
        return best


@dataclass
class Doc:
    """A parsed YAML mapping and where each of its keys came from."""

    file: str
    data: dict
    marks: MarkTree


class _Builder:
    def __init__(self, loader: Any, file: str) -> None:
        self.loader = loader
        self.file = file
        self.problems: list[Problem] = []

    def mark(self, node: yaml.Node) -> Mark:
        return Mark(self.file, node.start_mark.line + 1)

    def build(self, node: yaml.Node, path: tuple, tree: MarkTree) -> Any:
        if len(path) > MAX_DEPTH:
            self.problems.append(Problem(self.file, self.mark(node).line, format_key(path),
                                         f"nesting deeper than {MAX_DEPTH} levels"))
            return None
        if isinstance(node, yaml.MappingNode):
            self.loader.flatten_mapping(node)  # resolves YAML merge keys (<<)
            out: dict = {}
            for key_node, value_node in node.value:
                key = self.loader.construct_object(key_node, deep=True)
                line = self.mark(key_node).line
                if not isinstance(key, str):
                    self.problems.append(Problem(
                        self.file, line, format_key(path + (str(key),)),
                        f"keys must be text, got {type(key).__name__} {key!r}; quote it"))
                    key = str(key)
                if key in out:
                    first = tree.children[key].mark
                    self.problems.append(Problem(
                        self.file, line, format_key(path + (key,)),
                        f"duplicate key (first set on line {first.line if first else '?'})"))
                child = MarkTree(self.mark(key_node))
                tree.children[key] = child
                out[key] = self.build(value_node, path + (key,), child)
            return out
        if isinstance(node, yaml.SequenceNode):
            items = []
            for i, item_node in enumerate(node.value):
                child = MarkTree(self.mark(item_node))
                tree.children[i] = child
                items.append(self.build(item_node, path + (i,), child))
            return items
        return self.loader.construct_object(node, deep=True)


def parse(text: str, file: str) -> Doc:
    """Parse one YAML document into a Doc; raise BlueprintError with file and line."""
    loader = _LOADER(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return Doc(file, {}, MarkTree(Mark(file, 1)))
        if not isinstance(node, yaml.MappingNode):
            raise BlueprintError(Problem(file, node.start_mark.line + 1, "",
                                         "a blueprint file must be a mapping of keys to values"))
        builder = _Builder(loader, file)
        tree = MarkTree(Mark(file, node.start_mark.line + 1))
        data = builder.build(node, (), tree)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        raise BlueprintError(Problem(file, line, "", f"YAML syntax error: {e.problem or e}")) from None
    except yaml.YAMLError as e:
        raise BlueprintError(Problem(file, None, "", f"YAML error: {e}")) from None
    finally:
        loader.dispose()
    if builder.problems:
        raise BlueprintError(builder.problems)
    return Doc(file, data, tree)


def load(path: Path, display: str | None = None) -> Doc:
    name = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BlueprintError(Problem(name, None, "", "file not found")) from None
    except (OSError, UnicodeDecodeError) as e:
        raise BlueprintError(Problem(name, None, "", f"cannot read: {e}")) from None
    return parse(text, name)
