"""``schoolmdm devices list|search|show``: find and inspect devices through ``/api/v1``."""

from __future__ import annotations

from typing import Optional

import typer
from rich.text import Text

from app.cli.apiclient import CaFileOpt, JsonOpt, ServerOpt, TokenOpt, connect, path
from app.cli.common import EXIT_NOT_FOUND, CliError, console, handle_errors, print_json, say, table

app = typer.Typer(no_args_is_help=True)

COLUMNS = ("udid", "serial", "name", "school", "role", "state", "model", "iOS", "last seen")


def _rows(items: list[dict]):
    for d in items:
        yield (d["udid"], d["serial"], d["name"], d["school_id"], d["role"], d["enrollment_state"],
               d["product_name"], d["os_version"], d["last_seen_at"])


@app.command("list")
@handle_errors
def list_(school: Optional[str] = typer.Option(None, help="only this school"),
          state: Optional[str] = typer.Option(None, help="pending | authenticated | enrolled | unenrolled"),
          role: Optional[str] = typer.Option(None, help="pupil | teacher"),
          os_version: Optional[str] = typer.Option(None, "--os-version", help="exact iOS version, e.g. 17.5.1"),
          sort: str = typer.Option("udid", help="udid | serial | name | last_seen | school | os"),
          desc: bool = typer.Option(False, "--desc", help="sort descending"),
          limit: int = typer.Option(50, min=1, max=1000), offset: int = typer.Option(0, min=0),
          server: ServerOpt = None, token: TokenOpt = None, ca_file: CaFileOpt = None,
          json_out: JsonOpt = False) -> None:
    """List devices, filtered and paged."""
    with connect(server, token, ca_file) as api:
        res = api.get("/devices", school=school, state=state, role=role, os_version=os_version, sort=sort,
                      desc=str(desc).lower() if desc else None, limit=limit, offset=offset)
    if json_out:
        return print_json(res)
    console.print(table(COLUMNS, _rows(res["items"])))
    say(f"{len(res['items'])} of {res['total']} (offset {res.get('offset', offset)})")


@app.command("search")
@handle_errors
def search(query: str = typer.Argument(..., help="serial number, UDID or (part of) the device name"),
           limit: int = typer.Option(50, min=1, max=1000),
           server: ServerOpt = None, token: TokenOpt = None, ca_file: CaFileOpt = None,
           json_out: JsonOpt = False) -> None:
    """Find devices by serial, UDID or name (exit code 3 when nothing matches)."""
    with connect(server, token, ca_file) as api:
        res = api.get("/devices", q=query, limit=limit)
    if json_out:
        print_json(res)
    elif res["items"]:
        console.print(table(COLUMNS, _rows(res["items"])))
        say(f"{len(res['items'])} of {res['total']}")
    if not res["items"]:
        raise CliError(f"no device matches {query!r}", EXIT_NOT_FOUND)


@app.command("show")
@handle_errors
def show(udid: str = typer.Argument(..., help="UDID or serial number"),
         history: int = typer.Option(20, min=0, help="how many recent commands to list"),
         server: ServerOpt = None, token: TokenOpt = None, ca_file: CaFileOpt = None,
         json_out: JsonOpt = False) -> None:
    """Everything known about one device: state, profiles, recent commands and enrollment history."""
    with connect(server, token, ca_file) as api:
        d = api.get(path("devices", udid))
    if json_out:
        return print_json(d)
    console.print(Text.assemble((d["name"] or d["udid"], "bold"), f"  {d['product_name'] or ''}"
                                f"  iOS {d['os_version'] or '?'}"), highlight=False)
    for k in ("udid", "serial", "school_id", "role", "enrollment_state", "enrolled_at", "last_seen_at",
              "pushable", "last_push_status", "inventory_at"):
        say(f"  {k:18} {d.get(k) if d.get(k) is not None else '-'}")
    if d.get("setup"):  # out-of-the-box set-up (AwaitingConfiguration) and why it stopped
        say(f"  {'setup':18} {d['setup']['state']}" + (f": {d['setup']['error']}" if d["setup"]["error"] else ""))
    profiles = d.get("profiles") or []
    console.print(table(("profile", "name", "source", "updated"),
                        ((p["identifier"], p["name"], p["source"], p["updated_at"]) for p in profiles)))
    commands = (d.get("commands") or [])[:history]
    console.print(table(("command", "type", "status", "queued", "completed"),
                        ((c["command_uuid"], c["request_type"], c["status"], c["queued_at"], c["completed_at"])
                         for c in commands)))
    events = (d.get("enrollment_history") or [])[:10]
    if events:
        console.print(table(("enrollment event", "at", "detail"), ((e["event"], e["at"], e["detail"]) for e in events)))
