"""Bearer-token authentication and role checks for ``/api/v1``."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from mdm.errors import Forbidden, Unauthorized

RANK = {"support": 1, "technician": 2, "admin": 3}


@dataclass(frozen=True)
class Principal:
    name: str
    role: str
    schools: tuple[str, ...] | None  # None = every school

    def at_least(self, role: str) -> bool:
        return RANK[self.role] >= RANK[role]

    def require(self, role: str) -> None:
        if not self.at_least(role):
            raise Forbidden(f"this needs the {role} role; token {self.name!r} has {self.role}")

    def require_school(self, school_id: str | None) -> None:
        if self.schools is not None and school_id not in self.schools:
            raise Forbidden(f"token {self.name!r} is not allowed for school {school_id!r}")


def may_queue(me: Principal, request_type: str) -> bool:
    """The support desk may queue only commands marked ``safe`` in ``mdm.commands``; technicians
    and admins any (an unknown RequestType raises)."""
    from mdm.commands import command_class

    safe = command_class(request_type).safe
    return safe or me.at_least("technician")


def require_queue(me: Principal, request_type: str) -> None:
    if not may_queue(me, request_type):
        raise Forbidden(f"the {me.role} role may not queue {request_type}")


def make_principal_dependency(container):
    limiter = container.api_limiter

    async def principal(request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else None
        if not token:
            token = request.cookies.get("schoolmdm_token")
        if not token:
            raise Unauthorized("missing bearer token (Authorization: Bearer <token>)")
        info = await run_in_threadpool(container.tokens.resolve, token, container.clock())
        if info is None:
            raise Unauthorized("token is unknown or revoked")
        limiter.check(info["name"])
        return Principal(info["name"], info["role"], tuple(info["schools"]) if info["schools"] else None)

    return principal
