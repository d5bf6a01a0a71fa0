"""``schoolmdm ade identity|token|sync|status|map|unmap|rules``: Apple School Manager, on the server box.

``identity`` prints (or writes) the certificate to upload to Apple School Manager for this MDM
server; ``token FILE.p7m`` decrypts the server token downloaded from there with that identity's
key and stores it (its secrets are never printed); ``map`` says which school a serial (or a
serial prefix) belongs to; ``sync`` fetches devices, defines each school's enrollment profile
and assigns it now (it also runs on a schedule inside ``serve``); ``status`` shows where it stands.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from app.cli.common import CliError, EXIT_USAGE, console, container, handle_errors, print_json, table

app = typer.Typer(no_args_is_help=True)
JsonOpt = typer.Option(False, "--json", help="print JSON")
HEADERS = {"serial", "serialnumber", "seriennummer", "sn"}  # a delivery note's header line


@app.command("identity")
@handle_errors
def identity(out: Optional[Path] = typer.Option(None, "--out", help="write the PEM here instead of printing it")) -> None:
    """The public certificate to upload to Apple School Manager (created on first use)."""
    pem = container(migrate=False).ade_identity.cert_pem()
    if out:
        out.write_bytes(pem)
        console.print(f"ADE certificate written to {out}: upload it in Apple School Manager "
                      "(Preferences > MDM servers), then download the server token")
    else:
        typer.echo(pem.decode(), nl=False)


@app.command("token")
@handle_errors
def token(path: Path = typer.Argument(..., exists=True, dir_okay=False, help="the server token (.p7m)"),
          offline: bool = typer.Option(False, "--offline", help="store it without asking Apple who it is for"),
          json_out: bool = JsonOpt) -> None:
    """Decrypt and store the server token from Apple School Manager."""
    c = container()
    doc = c.ade_sync.install_token(path.read_bytes(), c.ade_identity, actor="cli", check=not offline)
    if json_out:
        return print_json(doc)
    console.print(f"server token stored: MDM server {doc.get('server_name') or '?'} of "
                  f"{doc.get('org_name') or '?'}, valid until {doc.get('access_token_expiry') or '?'}")
    console.print("devices are fetched on the next sync: schoolmdm ade sync")


@app.command("sync")
@handle_errors
def sync(json_out: bool = JsonOpt) -> None:
    """Fetch ADE devices, define each school's enrollment profile and assign it, now."""
    res = container().ade_sync.run()
    if json_out:
        return print_json(res)
    console.print(f"{res['fetched']} fetched; {res['added']} added, {res['modified']} modified, "
                  f"{res['deleted']} deleted{' (cursor was reset)' if res['cursor_reset'] else ''}")
    console.print(f"{res.get('changed', 0)} school assignment(s) changed, {res.get('unmapped', 0)} device(s) "
                  "without a school (schoolmdm ade map)")
    if res["profiles_defined"]:
        console.print(f"profiles defined for: {', '.join(res['profiles_defined'])}")
    console.print(f"{res['assigned']} device(s) assigned their school's profile")
    for serial, status in sorted(res["not_assigned"].items()):
        console.print(f"  {serial}: {status}", style="yellow", highlight=False)


@app.command("status")
@handle_errors
def status(json_out: bool = JsonOpt) -> None:
    """The server token, the last sync, and ADE devices by school, profile and set-up state."""
    c = container()
    doc = {"config": c.ade_store.config(), **c.ade_store.status()}
    if json_out:
        return print_json(doc)
    cfg = doc["config"]
    if cfg is None:
        console.print("no server token yet: schoolmdm ade identity, upload it to Apple School Manager, "
                      "then schoolmdm ade token FILE.p7m")
    else:
        console.print(f"MDM server {cfg['server_name'] or '?'} ({cfg['org_name'] or '?'}), token valid until "
                      f"{cfg['access_token_expiry'] or '?'}")
        console.print(f"last sync {cfg['synced_at'] or 'never'}; cursor {cfg['cursor_phase'] or 'none'}"
                      + (f"; last error {cfg['last_error_at']}: {cfg['last_error']}" if cfg["last_error"] else ""),
                      highlight=False)
    console.print(f"{doc['devices']} device(s), {doc['enrolled']} enrolled, {doc['removed']} removed, "
                  f"{doc['rules']} rule(s)")
    rows = [(school, n, doc["profiles"].get(school, "-")) for school, n in sorted(doc["by_school"].items())]
    console.print(table(("school", "devices", "profile"), rows))
    for title in ("profile_status", "assign_status", "setup"):
        if doc[title]:
            console.print(f"{title}: " + ", ".join(f"{k} {v}" for k, v in sorted(doc[title].items())),
                          highlight=False)


def _serials(serial: List[str], file: Optional[Path]) -> list[str]:
    out = list(serial)
    if file is not None:
        for line in file.read_text(encoding="utf-8").splitlines():
            first = line.split(",")[0].split(";")[0].strip()
            if first and first.isalnum() and first.lower() not in HEADERS:
                out.append(first)
    return out


@app.command("map")
@handle_errors
def map_(school: str = typer.Argument(..., help="school id"),
         serial: List[str] = typer.Option([], "--serial", help="a serial number (repeatable)"),
         prefix: List[str] = typer.Option([], "--prefix", help="every serial starting with this (repeatable)"),
         file: Optional[Path] = typer.Option(None, "--file", exists=True, dir_okay=False,
                                             help="serials, one a line (first column of a CSV delivery note)"),
         role: str = typer.Option("pupil", "--role", help="pupil | teacher")) -> None:
    """Say which school ADE devices belong to (applied on the next sync)."""
    serials = _serials(serial, file)
    if not serials and not prefix:
        raise CliError("give --serial, --prefix or --file", EXIT_USAGE)
    c = container()
    n = c.ade_store.add_rules(school, serials=serials, prefixes=prefix, role=role, actor="cli", now=c.clock())
    console.print(f"{n} rule(s) for {school} ({role}); run schoolmdm ade sync to assign their profile")


@app.command("unmap")
@handle_errors
def unmap(serial: List[str] = typer.Option([], "--serial"), prefix: List[str] = typer.Option([], "--prefix")) -> None:
    """Remove serial or prefix rules."""
    console.print(f"{container().ade_store.remove_rules(serials=serial, prefixes=prefix)} rule(s) removed")


@app.command("rules")
@handle_errors
def rules(json_out: bool = JsonOpt) -> None:
    """The serial -> school rules."""
    items = container().ade_store.rules()
    if json_out:
        return print_json(items)
    console.print(table(("kind", "pattern", "school", "role", "created"),
                        [(r["kind"], r["pattern"], r["school_id"], r["role"], r["created_at"]) for r in items]))
