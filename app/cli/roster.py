"""``schoolmdm roster import`` (local, on the server box), ``schoolmdm waves create|list|show`` and
``schoolmdm rollout [plan]`` (through ``/api/v1``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from app.cli.apiclient import CaFileOpt, JsonOpt, ServerOpt, TokenOpt, connect, path
from app.cli.common import EXIT_USAGE, CliError, console, container, error_line, handle_errors, print_json, say, table
from app.services.roster_files import RosterError

roster = typer.Typer(no_args_is_help=True)
waves = typer.Typer(no_args_is_help=True)
rollout = typer.Typer(invoke_without_command=True)
KINDS = ("locations", "pupils", "teachers", "courses", "classes", "memberships")
COUNTS = ("delivered", "enrolled", "configured", "failed")


@roster.command("import")
@handle_errors
def import_(source: Path = typer.Argument(..., exists=True, help="a zip of the six ASM CSV files, or their folder"),
            json_out: bool = typer.Option(False, "--json")) -> None:
    """Import an Apple School Manager roster: all of it, or nothing when any row is wrong."""
    try:
        rep = container().roster.import_path(source, actor="cli")
    except RosterError as e:
        if json_out:
            print_json({"error": {"code": e.code, "message": e.message, "details": e.details}})
        else:
            for p in e.problems[:200]:
                error_line(str(p))
            error_line(f"roster refused, nothing was imported ({len(e.problems)} problem(s))")
        raise typer.Exit(EXIT_USAGE) from None
    if json_out:
        return print_json(rep)
    console.print(table(("kind", "added", "changed", "removed", "unchanged"),
                        ((k, *(rep[k]["counts"][x] for x in ("added", "changed", "removed", "unchanged")))
                         for k in KINDS)))
    for sid in rep["schools_linked"]:
        say(f"location linked to school {sid}")
    for p in rep["classroom_profiles"]:
        say(f"new profile version {p['identifier']} v{p['version']}")
    if rep["loans_updated"]:
        say(f"{rep['loans_updated']} open loan(s) follow their pupil's new name or number")
    for w in rep["warnings"]:
        console.print(w, style="yellow", highlight=False, soft_wrap=True, markup=False)


def _school_rows(items: list[dict]):
    return ((i["school_id"], *(i[k] for k in COUNTS)) for i in items)


def _show_wave(w: dict) -> None:
    say(f"wave {w['id']} {w['name']!r}, created {w['created_at']} by {w['created_by']}")
    console.print(table(("school", *COUNTS), _school_rows(w["schools"])))
    t = w["totals"]
    say("total: " + ", ".join(f"{k} {t[k]}" for k in COUNTS))


@waves.command("create")
@handle_errors
def waves_create(name: str = typer.Argument(..., help="e.g. 2025-09-Lieferung-1"),
                 csv: Path = typer.Option(..., "--csv", exists=True, dir_okay=False,
                                          help="serial[,school] per line (header optional)"),
                 school: Optional[str] = typer.Option(None, "--school", help="school of the lines that name none"),
                 server: ServerOpt = None, token: TokenOpt = None, ca_file: CaFileOpt = None,
                 json_out: JsonOpt = False) -> None:
    """Record a delivery wave: which serials went to which school (all rows or none)."""
    try:
        text = csv.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise CliError(f"{csv} is not UTF-8 text", EXIT_USAGE) from None
    with connect(server, token, ca_file) as api:
        w = api.post("/waves", {"name": name, "csv": text, "school": school})
    if json_out:
        return print_json(w)
    _show_wave(w)


@waves.command("list")
@handle_errors
def waves_list(server: ServerOpt = None, token: TokenOpt = None, ca_file: CaFileOpt = None,
               json_out: JsonOpt = False) -> None:
    """Delivery waves, newest first."""
    with connect(server, token, ca_file) as api:
        res = api.get("/waves")
    if json_out:
        return print_json(res)
    console.print(table(("id", "name", "devices", "created", "by"),
                        ((w["id"], w["name"], w["devices"], w["created_at"], w["created_by"]) for w in res["items"])))


@waves.command("show")
@handle_errors
def waves_show(wave_id: int = typer.Argument(...), devices: bool = typer.Option(False, "--devices",
                                                                               help="list every iPad"),
               server: ServerOpt = None, token: TokenOpt = None, ca_file: CaFileOpt = None,
               json_out: JsonOpt = False) -> None:
    """A wave's progress per school (delivered, enrolled, configured, failed)."""
    with connect(server, token, ca_file) as api:
        w = api.get(path("waves", str(wave_id)))
    if json_out:
        return print_json(w)
    _show_wave(w)
    if devices:
        console.print(table(("serial", "school", "state", "udid", "reason"),
                            ((d["serial"], d["school_id"], d["state"], d["udid"], d["reason"]) for d in w["devices"])))


@rollout.callback()
@handle_errors
def rollout_show(ctx: typer.Context, server: ServerOpt = None, token: TokenOpt = None, ca_file: CaFileOpt = None,
                 json_out: JsonOpt = False) -> None:
    """The city's rollout: progress per school and overall, and the schools next in line."""
    if ctx.invoked_subcommand is not None:
        return
    with connect(server, token, ca_file) as api:
        res = api.get("/rollout")
    if json_out:
        return print_json(res)
    shown = [i for i in res["schools"] if i["in_rollout"]]
    console.print(table(("school", "prio", "planned", *COUNTS, "progress"),
                        ((i["school_id"], i["priority"], i["planned"], *(i[k] for k in COUNTS),
                          f"{i['progress']:.0%}") for i in shown)))
    o = res["overall"]
    say(f"city: {o['configured']} of {o['planned']} iPads configured ({o['progress']:.0%}), "
        f"{o['delivered']} delivered, {o['failed']} failed; {o['schools_done']} of {o['schools']} schools done")
    if res["next_in_line"]:
        say("next in line: " + ", ".join(
            f"{n['school_id']} ({n['to_deliver']} to deliver)" for n in res["next_in_line"][:10]))


@rollout.command("plan")
@handle_errors
def rollout_plan(school: str = typer.Argument(...),
                 priority: Optional[int] = typer.Option(None, min=1, help="1 = first in line"),
                 planned: Optional[int] = typer.Option(None, min=0, help="how many iPads the school is to get"),
                 server: ServerOpt = None, token: TokenOpt = None, ca_file: CaFileOpt = None,
                 json_out: JsonOpt = False) -> None:
    """Set a school's rollout priority and planned number of iPads (admin)."""
    body = {k: v for k, v in (("priority", priority), ("planned", planned)) if v is not None}
    if not body:
        raise CliError("give --priority and/or --planned", EXIT_USAGE)
    with connect(server, token, ca_file) as api:
        res = api.request("PUT", path("rollout", "schools", school), json=body)
    if json_out:
        return print_json(res)
    planned = res["planned"] if res["planned"] is not None else "-"
    say(f"{res['school_id']}: priority {res['priority'] or '-'}, planned {planned}")
