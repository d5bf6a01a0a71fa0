"""Shared CLI plumbing: one container per invocation, errors as messages with exit codes."""

from __future__ import annotations

import functools
import json
import sys
from typing import Any, Callable

import typer
from rich.console import Console

from mdm.errors import MDMError

console = Console()
err_console = Console(stderr=True)

#: exit codes that mean something to scripts
EXIT_ERROR, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_FORBIDDEN, EXIT_UNAVAILABLE = 1, 2, 3, 4, 5


def exit_code_for(e: MDMError) -> int:
    return {404: EXIT_NOT_FOUND, 403: EXIT_FORBIDDEN, 401: EXIT_FORBIDDEN, 503: EXIT_UNAVAILABLE}.get(
        e.status_code, EXIT_USAGE if e.status_code in (400, 409, 413, 422) else EXIT_ERROR)


def handle_errors(fn: Callable) -> Callable:
    @functools.wraps(fn)
    def wrapper(*a: Any, **kw: Any):
        try:
            return fn(*a, **kw)
        except MDMError as e:
            err_console.print(f"[red]error:[/red] {e.message}")
            raise typer.Exit(exit_code_for(e)) from None

    return wrapper


def container(migrate: bool = True):
    from app.container import Container
    from app.db.migrate import upgrade
    from app.settings import get_settings

    s = get_settings()
    if migrate:
        upgrade(s.database_url)
    return Container(s)


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
