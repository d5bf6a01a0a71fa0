"""Schools, enrollment URLs and API tokens."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from app.cli.common import console, container, handle_errors, print_json
from app.services.enrollment import hash_secret, new_secret
from mdm.errors import NotFound

tokens = typer.Typer(no_args_is_help=True)
schools = typer.Typer(no_args_is_help=True)


def enroll_url(c, school_id: str) -> str:
    school = c.schools.get(school_id)
    if school is None:
        raise NotFound(f"no school {school_id!r}; add it with 'schoolmdm schools add'")
    token = new_secret()
    c.schools.upsert(school_id, school["name"], hash_secret(token), c.clock())
    return f"{c.settings.public_url.rstrip('/')}/enroll/{school_id}?token={token}"


@schools.command("add")
@handle_errors
def schools_add(school_id: str, name: str, json_out: bool = typer.Option(False, "--json")) -> None:
    """Add (or rename) a school and print its enrollment URL."""
    c = container()
    created = c.schools.upsert(school_id, name, None, c.clock())
    url = enroll_url(c, school_id)
    if json_out:
        print_json({"id": school_id, "name": name, "created": created, "enroll_url": url})
    else:
        console.print(f"{'added' if created else 'updated'} {school_id}: {name}\nenroll URL: {url}")


@schools.command("list")
@handle_errors
def schools_list(json_out: bool = typer.Option(False, "--json")) -> None:
    items = container().schools.list()
    if json_out:
        return print_json(items)
    t = Table("id", "name")
    for s in items:
        t.add_row(s["id"], s["name"])
    console.print(t)


@tokens.command("create")
@handle_errors
def tokens_create(name: str, role: str = typer.Option(..., help="admin | technician | support"),
                  school: Optional[list[str]] = typer.Option(None, help="limit to these schools"),
                  json_out: bool = typer.Option(False, "--json")) -> None:
    """Create a named API token; it is shown once, only its hash is stored."""
    c = container()
    token = c.tokens.create(name, role, list(school) if school else None, c.clock())
    if json_out:
        print_json({"name": name, "role": role, "schools": school or None, "token": token})
    else:
        console.print(f"token for {name} ({role}): [bold]{token}[/bold]\nstore it now: it is not shown again.")


@tokens.command("list")
@handle_errors
def tokens_list(json_out: bool = typer.Option(False, "--json")) -> None:
    items = container().tokens.list()
    if json_out:
        return print_json(items)
    t = Table("name", "role", "schools", "created", "revoked")
    for i in items:
        t.add_row(i["name"], i["role"], ",".join(i["schools"] or ["*"]), i["created_at"], str(i["revoked"]))
    console.print(t)


@tokens.command("revoke")
@handle_errors
def tokens_revoke(name: str) -> None:
    c = container()
    c.tokens.revoke(name, c.clock())
    console.print(f"revoked {name}")


def register(app: typer.Typer) -> None:
    @app.command("enroll-url")
    @handle_errors
    def enroll_url_cmd(school_id: str, json_out: bool = typer.Option(False, "--json")) -> None:
        """Issue a fresh enrollment URL for a school (the previous one stops working)."""
        url = enroll_url(container(), school_id)
        print_json({"school": school_id, "enroll_url": url}) if json_out else console.print(url)

    @app.command("migrate")
    @handle_errors
    def migrate() -> None:
        """Apply database migrations."""
        container()
        console.print("database is at the latest schema")
