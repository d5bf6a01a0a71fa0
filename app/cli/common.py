"""Shared CLI plumbing: consoles, exit codes, errors as one-line messages, JSON and table output."""

from __future__ import annotations

import functools
import json
import sys
from typing import Any, Callable, Iterable

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from mdm.errors import MDMError

console = Console()
err_console = Console(stderr=True)

#: exit codes that mean something to scripts
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_FORBIDDEN, EXIT_UNAVAILABLE, EXIT_JOB_FAILED = range(7)


class CliError(Exception):
    """An error to report as one line on stderr and an exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def exit_code_for_status(status: int) -> int:
    if status in (401, 403):
        return EXIT_FORBIDDEN
    if status in (404, 410):
        return EXIT_NOT_FOUND
    if status in (429, 502, 503, 504):
        return EXIT_UNAVAILABLE
    if 400 <= status < 500:
        return EXIT_USAGE
    return EXIT_ERROR


def exit_code_for(e: MDMError) -> int:
    return exit_code_for_status(e.status_code)


def error_line(message: str) -> None:
    """Print ``error: message`` on stderr, on one line."""
    one = " ".join(str(message).split())
    err_console.print(Text.assemble(("error: ", "bold red"), one), soft_wrap=True, highlight=False)


def handle_errors(fn: Callable) -> Callable:
    @functools.wraps(fn)
    def wrapper(*a: Any, **kw: Any):
        try:
            return fn(*a, **kw)
        except CliError as e:
            error_line(e.message)
            raise typer.Exit(e.exit_code) from None
        except MDMError as e:
            error_line(e.message)
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
    sys.stdout.flush()


def cell(v: Any) -> Text:
    """A table cell shown literally (no Rich markup from device names or messages)."""
    if v is None:
        return Text("")
    if isinstance(v, bool):
        return Text("yes" if v else "no")
    if isinstance(v, (dict, list)):
        return Text(json.dumps(v, separators=(",", ":"), default=str))
    return Text(str(v))


def table(columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> Table:
    t = Table(*columns)
    for r in rows:
        t.add_row(*(cell(v) for v in r))
    return t


def say(*parts: Any) -> None:
    """Print plain text on stdout without Rich markup or highlighting."""
    console.print(Text(" ".join(str(p) for p in parts)), soft_wrap=True, highlight=False)
