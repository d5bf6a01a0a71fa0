"""``schoolmdm loans lend|return|list|find``: the support desk's loaner iPads, through ``/api/v1``."""

from __future__ import annotations

from typing import Optional

import typer

from app.cli.apiclient import CaFileOpt, JsonOpt, ServerOpt, TokenOpt, connect, path
from app.cli.common import EXIT_NOT_FOUND, CliError, console, handle_errors, print_json, say, table

app = typer.Typer(no_args_is_help=True)
COLUMNS = ("loan", "serial", "school", "pupil", "number", "user name", "lent", "returned")


def _rows(items: list[dict]):
    for x in items:
        p = x["pupil"]
        yield (x["id"], x["serial"] or x["udid"], x["school_id"], p["name"], p["person_number"], p["sis_username"],
               x["lent_at"], x["returned_at"] or "on loan")


def _device_field(device: str) -> dict:
    """A UDID (long, or with a hyphen) or a serial number."""
    return {"udid": device} if len(device) > 20 or "-" in device else {"serial": device.upper()}


@app.command("lend")
@handle_errors
def lend(device: str = typer.Argument(..., help="the iPad: serial number or UDID"),
         pupil: str = typer.Argument(..., help="the pupil: person_id, sis_username or person_number"),
         server: ServerOpt = None, token: TokenOpt = None, ca_file: CaFileOpt = None,
         json_out: JsonOpt = False) -> None:
    """Lend an iPad to a pupil."""
    with connect(server, token, ca_file) as api:
        loan = api.post("/loans", {**_device_field(device), "pupil": pupil})
    if json_out:
        return print_json(loan)
    say(f"loan {loan['id']}: {loan['serial'] or loan['udid']} lent to {loan['pupil']['name']} "
        f"({loan['pupil']['person_id']})")


@app.command("return")
@handle_errors
def give_back(loan_id: int = typer.Argument(..., help="the loan's number"),
              erase: bool = typer.Option(False, "--erase", help="queue EraseDevice; the iPad then re-enrolls "
                                                                "through ADE (technician)"),
              note: Optional[str] = typer.Option(None, "--note", help="e.g. the iPad's condition"),
              server: ServerOpt = None, token: TokenOpt = None, ca_file: CaFileOpt = None,
              json_out: JsonOpt = False) -> None:
    """Record that a loaned iPad came back (the loan stays in the history)."""
    with connect(server, token, ca_file) as api:
        loan = api.post(path("loans", str(loan_id), "return"), {"erase": erase, "note": note})
    if json_out:
        return print_json(loan)
    say(f"loan {loan['id']}: {loan['serial'] or loan['udid']} returned by {loan['pupil']['name']}")
    if loan.get("erase_job"):
        say(f"EraseDevice queued: job {loan['erase_job']['id']}")


@app.command("list")
@handle_errors
def list_(pupil: Optional[str] = typer.Option(None, help="name, person_number or sis_username"),
          device: Optional[str] = typer.Option(None, help="serial number or UDID"),
          active: Optional[bool] = typer.Option(None, "--active/--returned", help="only open / only returned"),
          school: Optional[str] = typer.Option(None), limit: int = typer.Option(50, min=1, max=1000),
          offset: int = typer.Option(0, min=0),
          server: ServerOpt = None, token: TokenOpt = None, ca_file: CaFileOpt = None,
          json_out: JsonOpt = False) -> None:
    """Loans, newest first (the history of a device or a pupil with --device / --pupil)."""
    with connect(server, token, ca_file) as api:
        res = api.get("/loans", pupil=pupil, device=device, school=school, limit=limit, offset=offset,
                      active=None if active is None else str(active).lower())
    if json_out:
        return print_json(res)
    console.print(table(COLUMNS, _rows(res["items"])))
    say(f"{len(res['items'])} of {res['total']}")


@app.command("find")
@handle_errors
def find(query: str = typer.Argument(..., help="a pupil (name, number, user name) or an iPad (serial, UDID)"),
         history: bool = typer.Option(False, "--history", help="also returned loans"),
         server: ServerOpt = None, token: TokenOpt = None, ca_file: CaFileOpt = None,
         json_out: JsonOpt = False) -> None:
    """Which iPad a pupil has, or which pupil has an iPad (exit code 3 when nothing matches)."""
    with connect(server, token, ca_file) as api:
        res = api.get("/loans", q=query, active=None if history else "true", limit=100)
    if json_out:
        print_json(res)
    elif res["items"]:
        console.print(table(COLUMNS, _rows(res["items"])))
    if not res["items"]:
        raise CliError(f"no {'' if history else 'open '}loan matches {query!r}", EXIT_NOT_FOUND)
