"""``schoolmdm devices list|show|search``."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from app.cli.common import console, container, handle_errors, print_json

app = typer.Typer(no_args_is_help=True)


def _table(items: list[dict]) -> Table:
    t = Table("udid", "serial", "name", "school", "role", "state", "model", "iOS", "last seen")
    for d in items:
        t.add_row(d["udid"], d["serial"] or "", d["name"] or "", d["school_id"] or "", d["role"],
                  d["enrollment_state"], d["product_name"] or "", d["os_version"] or "", d["last_seen_at"] or "")
    return t


@app.command("list")
@handle_errors
def list_(school: Optional[str] = None, state: Optional[str] = None, role: Optional[str] = None,
          limit: int = 50, offset: int = 0, json_out: bool = typer.Option(False, "--json")) -> None:
    res = container().devices.list(school_id=school, state=state, role=role, limit=limit, offset=offset)
    if json_out:
        return print_json(res)
    console.print(_table(res["items"]))
    console.print(f"{len(res['items'])} of {res['total']}")


@app.command("search")
@handle_errors
def search(query: str, json_out: bool = typer.Option(False, "--json")) -> None:
    """Find devices by serial, UDID or name."""
    res = container().devices.list(q=query, limit=50)
    if json_out:
        return print_json(res)
    console.print(_table(res["items"]))
    if not res["items"]:
        raise typer.Exit(3)


@app.command("show")
@handle_errors
def show(udid: str, json_out: bool = typer.Option(False, "--json")) -> None:
    """Everything known about one device (UDID or serial)."""
    d = container().devices.get(udid)
    if json_out:
        return print_json(d)
    console.print(f"[bold]{d['name'] or d['udid']}[/bold]  {d['product_name'] or ''}  iOS {d['os_version'] or '?'}")
    for k in ("udid", "serial", "school_id", "role", "enrollment_state", "enrolled_at", "last_seen_at",
              "pushable", "last_push_status"):
        console.print(f"  {k:18} {d[k]}")
    t = Table("profile", "name", "source", "updated")
    for p in d["profiles"]:
        t.add_row(p["identifier"], p["name"] or "", p["source"], p["updated_at"] or "")
    console.print(t)
    t = Table("command", "type", "status", "queued", "completed")
    for cmd in d["commands"][:20]:
        t.add_row(cmd["command_uuid"], cmd["request_type"], cmd["status"], cmd["queued_at"] or "",
                  cmd["completed_at"] or "")
    console.print(t)
