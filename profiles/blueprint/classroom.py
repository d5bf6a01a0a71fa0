"""The Classroom section: classes with their teachers (leaders) and pupils (members)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from profiles.blueprint.sections import Strict


class Person(Strict):
    """A pupil or teacher: ``{id, name}``, or just an id."""

    id: str = Field(min_length=1)
    name: str = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, v: Any) -> Any:
        return {"id": v, "name": v} if isinstance(v, str) else v


class SchoolClass(Strict):
    name: str
    group_id: int = Field(ge=0, le=65535)  # Classroom's BeaconID
    description: str | None = None
    teachers: list[Person] = []
    pupils: list[Person] = []


class Classroom(Strict):
    organisation: str | None = None  # OrganizationName; default: the blueprint's organisation
    classes: list[SchoolClass] = []

    @model_validator(mode="after")
    def _unique(self) -> Classroom:
        seen_ids: dict[int, str] = {}
        names: dict[str, str] = {}
        for c in self.classes:
            if c.group_id in seen_ids:
                raise ValueError(f"classes {seen_ids[c.group_id]!r} and {c.name!r} share group_id {c.group_id}")
            seen_ids[c.group_id] = c.name
            for p in c.teachers + c.pupils:
                if names.setdefault(p.id, p.name) != p.name:
                    raise ValueError(f"person {p.id!r} has two names: {names[p.id]!r} and {p.name!r}")
        return self
