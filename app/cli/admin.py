"""Administration.

Through ``/api/v1`` (admin token): ``tokens create|list|revoke`` and ``audit``.
Local, straight to the database on the server box (bootstrap): ``schools add|list``,
``enroll-url``, ``migrate`` and ``admin-token``.
"""

from __future__ import annotations

from typing import Optional

import typer

from app.cli.apiclient import CaFileOpt, JsonOpt, ServerOpt, TokenOpt, connect, path
from app.cli.common import console, container, handle_errors, print_json, say, table
from app.services.enrollment import hash_secret, new_secret
from mdm.errors import NotFound, ValidationFailed

tokens = typer.Typer(no_args_is_help=True)
schools = typer.Typer(no_args_is_help=True)
ROLES = ("admin", "technician", "support")


def enroll_url(c, school_id: str) -> str:
    school = c.schools.get(school_id)
    if school is None:
        raise NotFound(f"no school {school_id!r}; add it with 'schoolmdm schools add'")
    token = new_secret()
    c.schools.upsert(school_id, school["name"], hash_secret(token), c.clock())
    return f"{c.settings.public_url.rstrip('/')}/enroll/{school_id}?token={token}"


def show_new_token(doc: dict, json_out: bool) -> None:
    """The one place a token is ever printed: right after it was created."""
    if json_out:
        return print_json(doc)
    scope = ", ".join(doc.get("schools") or []) or "every school"
    say(f"token for {doc['name']} ({doc['role']}, {scope}):")
    say(doc["token"])
    say("store it now: it is not shown again (only its hash is kept).")


# --- through the API -------------------------------------------------------------------------

@tokens.command("create")
@handle_errors
def tokens_create(name: str = typer.Argument(..., help="who or what uses the token, e.g. desk-anna"),
                  role: str = typer.Option(..., help="admin | technician | support"),
                  school: Optional[list[str]] = typer.Option(None, "--school", help="limit to these schools "
                                                             "(repeatable; default every school)"),
                  server: ServerOpt = None, token: TokenOpt = None, ca_file: CaFileOpt = None,
                  json_out: JsonOpt = False) -> None:
    """Create a named API token; it is printed once, only its hash is stored."""
    with connect(server, token, ca_file) as api:
        doc = api.post("/tokens", {"name": name, "role": role, "schools": list(school) if school else None})
    show_new_token(doc, json_out)


@tokens.command("list")
@handle_errors
def tokens_list(server: ServerOpt = None, token: TokenOpt = None, ca_file: CaFileOpt = None,
                json_out: JsonOpt = False) -> None:
    """Every API token: name, role, schools, created, revoked (never the token itself)."""
    with connect(server, token, ca_file) as api:
        res = api.get("/tokens")
    if json_out:
        return print_json(res)
    console.print(table(("name", "role", "schools", "created", "revoked"),
                        ((t["name"], t["role"], ",".join(t["schools"] or ["*"]), t["created_at"], t["revoked"])
                         for t in res["items"])))


@tokens.command("revoke")
@handle_errors
def tokens_revoke(name: str = typer.Argument(..., help="the token's name"),
                  server: ServerOpt = None, token: TokenOpt = None, ca_file: CaFileOpt = None,
                  json_out: JsonOpt = False) -> None:
    """Revoke a token by name; requests with it are refused from now on."""
    with connect(server, token, ca_file) as api:
        res = api.delete(path("tokens", name))
    print_json(res) if json_out else say(f"revoked {name}")


def audit(actor: Optional[str] = typer.Option(None, help="who (token name)"),
          action: Optional[str] = typer.Option(None, help="e.g. queue:DeviceLock, job:cancel, token:create"),
          target: Optional[str] = typer.Option(None, help="substring of the target"),
          since: Optional[str] = typer.Option(None, help="ISO time, e.g. 2026-03-01 or 2026-03-01T08:00:00Z"),
          until: Optional[str] = typer.Option(None, help="ISO time (exclusive)"),
          limit: int = typer.Option(100, min=1, max=1000), offset: int = typer.Option(0, min=0),
          server: ServerOpt = None, token: TokenOpt = None, ca_file: CaFileOpt = None,
          json_out: JsonOpt = False) -> None:
    """The audit log (admin): who queued, cancelled, retried or changed what, newest first."""
    with connect(server, token, ca_file) as api:
        res = api.get("/audit", actor=actor, action=action, target=target, since=since, until=until,
                      limit=limit, offset=offset)
    if json_out:
        return print_json(res)
    console.print(table(("at", "actor", "action", "target", "details"),
                        ((e["at"], e["actor"], e["action"], e["target"], e["details"]) for e in res["items"])))
    say(f"{len(res['items'])} of {res['total']}")


# --- local, on the server box ----------------------------------------------------------------

@schools.command("add")
@handle_errors
def schools_add(school_id: str, name: str, json_out: JsonOpt = False) -> None:
    """Add (or rename) a school and print its enrollment URL (local)."""
    c = container()
    created = c.schools.upsert(school_id, name, None, c.clock())
    url = enroll_url(c, school_id)
    if json_out:
        print_json({"id": school_id, "name": name, "created": created, "enroll_url": url})
    else:
        say(f"{'added' if created else 'updated'} {school_id}: {name}\nenroll URL: {url}")


@schools.command("list")
@handle_errors
def schools_list(json_out: JsonOpt = False) -> None:
    """Every school (local)."""
    items = container().schools.list()
    if json_out:
        return print_json(items)
    console.print(table(("id", "name"), ((s["id"], s["name"]) for s in items)))


def register(app: typer.Typer) -> None:
    app.command("audit")(handle_errors(audit))

    @app.command("enroll-url")
    @handle_errors
    def enroll_url_cmd(school_id: str, json_out: JsonOpt = False) -> None:
        """Issue a fresh enrollment URL for a school; the previous one stops working (local)."""
        url = enroll_url(container(), school_id)
        print_json({"school": school_id, "enroll_url": url}) if json_out else say(url)

    @app.command("migrate")
    @handle_errors
    def migrate() -> None:
        """Apply database migrations (local)."""
        container()
        say("database is at the latest schema")

    @app.command("admin-token")
    @handle_errors
    def admin_token(name: str = typer.Argument(..., help="the token's name, e.g. it-admin"),
                    role: str = typer.Option("admin", help="admin | technician | support"),
                    school: Optional[list[str]] = typer.Option(None, "--school", help="limit to these schools"),
                    json_out: JsonOpt = False) -> None:
        """Create an API token directly in the database: the bootstrap for the first admin (local)."""
        if role not in ROLES:
            raise ValidationFailed(f"--role is one of {', '.join(ROLES)}, got {role!r}")
        c = container()
        secret = c.tokens.create(name, role, list(school) if school else None, c.clock())
        c.audit.record("local-cli", "token:create", name, {"role": role, "schools": list(school) if school else None})
        show_new_token({"name": name, "role": role, "schools": list(school) if school else None,
                        "token": secret}, json_out)
