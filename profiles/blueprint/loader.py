"""Load a city: ``base.yaml`` plus ``schools/<id>.yaml``, each school merged over its parent.

A school file inherits from ``base`` unless it says ``extends: <name>``, where
``<name>`` is another YAML file of the city directory without ``.yaml``
(``base``, ``templates/gymnasium``, ...); templates may extend further. Every
problem names the file, the line and the key path, and unknown keys come with
the nearest valid key.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from profiles.blueprint import source
from profiles.blueprint.errors import BlueprintError, Problem, errors_only, format_key
from profiles.blueprint.merge import merge, strip_appends
from profiles.blueprint.models import Blueprint
from profiles.blueprint.source import Doc, Mark, MarkTree

BASE = "base"
SCHOOLS = "schools"


@dataclass(frozen=True)
class City:
    directory: Path
    base: Blueprint
    schools: dict[str, Blueprint]
    marks: dict[str, MarkTree] = field(repr=False, default_factory=dict)  # per school id

    @property
    def name(self) -> str:
        return self.base.city

    def school(self, school_id: str) -> Blueprint:
        try:
            return self.schools[school_id]
        except KeyError:
            near = difflib.get_close_matches(school_id, list(self.schools), n=1)
            raise BlueprintError(Problem(None, None, "school", f"no school {school_id!r} in {self.name}",
                                         suggestion=near[0] if near else None)) from None

    def locate(self, school_id: str, path: tuple) -> Mark | None:
        """File and line that set ``path`` in a school's merged blueprint."""
        tree = self.marks.get(school_id)
        return tree.lookup(path) if tree else None


# --- pydantic errors -> problems ----------------------------------------------------------


def _unwrap(t: Any) -> Any:
    if typing.get_origin(t) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(t) if a is not type(None)]
        return args[0] if len(args) == 1 else t
    return t


def valid_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """The field names a mapping at ``loc`` may have (empty if unknown)."""
    t: Any = model
    for part in loc:
        t = _unwrap(t)
        origin = typing.get_origin(t)
        if isinstance(t, type) and issubclass(t, BaseModel):
            f = t.model_fields.get(part) if isinstance(part, str) else None
            if f is None:
                return []
            t = f.annotation
        elif origin is list:
            t = typing.get_args(t)[0]
        elif origin is dict:
            t = typing.get_args(t)[1]
        else:
            return []
    t = _unwrap(t)
    return list(t.model_fields) if isinstance(t, type) and issubclass(t, BaseModel) else []


def _problem(err: dict, doc: Doc, model: type[BaseModel]) -> Problem:
    loc = tuple(err["loc"])
    mark = doc.marks.lookup(loc)
    file, line = (mark.file, mark.line) if mark else (doc.file, None)
    ctx = err.get("ctx") or {}
    kind = err["type"]
    suggestion = ctx.get("suggestion")
    if kind == "extra_forbidden":
        near = difflib.get_close_matches(str(loc[-1]), valid_keys(model, loc[:-1]), n=1, cutoff=0.5)
        suggestion = near[0] if near else None
        message = f"unknown key {loc[-1]!r}"
    elif kind == "missing":
        message = f"required key {loc[-1]!r} is missing"
    elif kind == "literal_error":
        allowed = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        near = difflib.get_close_matches(str(err.get("input")), allowed, n=1, cutoff=0.4)
        suggestion = near[0] if near else None
        message = f"{err.get('input')!r} is not allowed here; use {ctx.get('expected')}"
    else:
        message = err["msg"].removeprefix("Value error, ")
    return Problem(file, line, format_key(loc), message, "error", suggestion)


def validate(doc: Doc, model: type[BaseModel] = Blueprint) -> tuple[Any, list[Problem]]:
    try:
        return model.model_validate(doc.data), []
    except ValidationError as e:
        return None, [_problem(err, doc, model) for err in e.errors()]


# --- files ------------------------------------------------------------------------------------


class _CityLoader:
    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.problems: list[Problem] = []
        self._resolved: dict[Path, Doc] = {}

    def names(self) -> list[str]:
        return sorted(str(p.relative_to(self.dir).with_suffix("")) for p in self.dir.rglob("*.yaml"))

    def base(self) -> Doc:
        path = self.dir / f"{BASE}.yaml"
        if path in self._resolved:
            return self._resolved[path]
        doc = source.load(path)
        for key in ("extends", "school"):
            if key in doc.data:
                m = doc.marks.lookup((key,))
                raise BlueprintError(Problem(doc.file, m.line if m else None, key,
                                             f"the city base cannot have {key!r}; it belongs in a school file"))
        appends = strip_appends(doc)
        if appends:
            raise BlueprintError(appends)
        self._resolved[path] = doc
        return doc

    def resolve(self, path: Path, chain: tuple[Path, ...] = ()) -> Doc:
        """The document at ``path`` merged over everything it extends."""
        if path == self.dir / f"{BASE}.yaml":
            return self.base()
        if path in self._resolved:
            return self._resolved[path]
        doc = source.load(path)
        parent_name = doc.data.pop("extends", BASE)
        mark = doc.marks.children.pop("extends", MarkTree()).mark
        line = mark.line if mark else None
        if not isinstance(parent_name, str):
            raise BlueprintError(Problem(doc.file, line, "extends", "extends names a file, e.g. base"))
        parent_path = self.dir / f"{parent_name}.yaml"
        inside = parent_path.resolve().is_relative_to(self.dir.resolve())
        if not inside or not parent_path.is_file():
            near = difflib.get_close_matches(parent_name, self.names(), n=1)
            raise BlueprintError(Problem(doc.file, line, "extends", f"no blueprint {parent_name!r} to extend",
                                         suggestion=near[0] if near else None))
        if parent_path in chain + (path,):
            raise BlueprintError(Problem(doc.file, line, "extends", f"circular extends via {parent_name!r}"))
        merged = merge(self.resolve(parent_path, chain + (path,)), doc)
        self._resolved[path] = merged
        return merged

    def school(self, path: Path) -> tuple[str, Doc]:
        school_id = path.stem
        doc = self.resolve(path)
        if not isinstance(doc.data.get("school"), dict):
            m = doc.marks.lookup(("school",))
            raise BlueprintError(Problem(doc.file, m.line if m else 1, "school",
                                         "a school file needs a 'school:' section with at least 'name'"))
        section = doc.data["school"]
        if "id" not in section:
            doc.data["school"] = {"id": school_id, **section}
        elif section["id"] != school_id:
            m = doc.marks.lookup(("school", "id"))
            raise BlueprintError(Problem(doc.file, m.line if m else None, "school.id",
                                         f"school id {section['id']!r} does not match the file name "
                                         f"{path.name!r}", suggestion=school_id))
        return school_id, doc


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen, out = set(), []
    for p in problems:
        k = (p.file, p.line, p.key, p.message, p.severity)
        if k not in seen:
            seen.add(k)
            out.append(p)
    return out


def _load(directory: Path | str) -> tuple[City | None, list[Problem]]:
    loader = _CityLoader(Path(directory))
    problems: list[Problem] = []
    base_model = None
    try:
        base_doc = loader.base()
        base_model, found = validate(base_doc)
        problems += found
    except BlueprintError as e:
        problems += e.problems
    schools: dict[str, Blueprint] = {}
    marks: dict[str, MarkTree] = {}
    school_dir = loader.dir / SCHOOLS
    paths = sorted(school_dir.glob("*.yaml")) if school_dir.is_dir() else []
    if not paths:
        problems.append(Problem(str(school_dir), None, "", "no school blueprints (schools/<id>.yaml)"))
    for path in paths:
        try:
            school_id, doc = loader.school(path)
        except BlueprintError as e:
            problems += e.problems
            continue
        model, found = validate(doc)
        problems += found
        if model is not None:
            schools[school_id] = model
            marks[school_id] = doc.marks
    problems = _dedupe(problems)
    if base_model is None:
        return None, problems
    return City(loader.dir, base_model, schools, marks), problems


def load_city(directory: Path | str) -> City:
    """Load and validate a city directory; raise BlueprintError listing every error."""
    city, problems = _load(directory)
    if city is None or errors_only(problems):
        raise BlueprintError(errors_only(problems) or problems)
    return city


def load_problems(directory: Path | str) -> tuple[City | None, list[Problem]]:
    """Like load_city, but return the problems instead of raising (used by ``check``).

    The city, when the base is valid, holds the schools that did load."""
    return _load(directory)
