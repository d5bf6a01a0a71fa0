"""Request bodies of ``/api/v1`` (responses are plain JSON documents)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


def _no_nul(value: Any) -> Any:
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("text must not contain NUL characters")
    elif isinstance(value, dict):
        for k, v in value.items():
            _no_nul(k)
            _no_nul(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _no_nul(v)
    return value


class ApiModel(BaseModel):
    """Base of the request bodies: unknown fields are refused, and so is NUL in any text (no name,
    serial or note has a use for it, and PostgreSQL refuses it)."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*")
    @classmethod
    def _text_without_nul(cls, value: Any) -> Any:
        return _no_nul(value)


class CommandRequest(ApiModel):
    model_config = ConfigDict(extra="forbid")
    request_type: str = Field(..., max_length=64, examples=["DeviceInformation"])
    params: dict[str, Any] = Field(default_factory=dict)
    devices: list[str] | None = Field(None, max_length=50_000)
    school: str | None = Field(None, max_length=64)
    role: Literal["pupil", "teacher"] | None = None
    all_devices: bool = False
    priority: int = Field(0, ge=-100, le=100)
    expires_at: dt.datetime | None = None

    @model_validator(mode="after")
    def _one_target(self):
        n = sum(bool(x) for x in (self.devices, self.school, self.all_devices))
        if n != 1:
            raise ValueError("name exactly one target: devices, school (optionally with role) or all_devices")
        if self.role and not self.school:
            raise ValueError("role needs a school")
        return self


class SchoolCreate(ApiModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(..., pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    name: str = Field(..., min_length=1, max_length=200)


class ProfilePush(ApiModel):
    model_config = ConfigDict(extra="forbid")
    devices: list[str] | None = None
    role: Literal["pupil", "teacher"] | None = None
    only_changed: bool = True
