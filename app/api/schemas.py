"""Request bodies of ``/api/v1`` (responses are plain JSON documents)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class CommandRequest(BaseModel):
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


class SchoolCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(..., pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    name: str = Field(..., min_length=1, max_length=200)


class ProfilePush(BaseModel):
    model_config = ConfigDict(extra="forbid")
    devices: list[str] | None = None
    role: Literal["pupil", "teacher"] | None = None
    only_changed: bool = True
