"""``schoolmdm blueprint check|import|show|diff|push`` and ``schoolmdm profiles build|list|diff``.

Operator commands on the server box (local database), like ``schools add``.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from app.cli.common import console, container, handle_errors, print_json
from mdm.errors import NotFound, ValidationFailed
from profiles.blueprint.errors import errors_only

blueprint = typer.Typer(no_args_is_help=True)
profiles = typer.Typer(no_args_is_help=True)
CityDir = typer.Argument(..., exists=True, file_okay=False, help="city directory: base.yaml and schools/*.yaml")


@blueprint.command("check")
@handle_errors
def check(directory: Path = CityDir, json_out: bool = typer.Option(False, "--json")) -> None:
    """Validate a city's blueprints: errors and warnings with file, line, key and a suggestion."""
    from profiles.blueprint import check as run_check

    problems = run_check(directory)
    if json_out:
        print_json([p.as_dict() for p in problems])
    else:
        for p in problems:
            console.print(str(p), style="red" if p.severity == "error" else "yellow", highlight=False,
                          soft_wrap=True, markup=False)
        console.print(f"{len(errors_only(problems))} error(s), "
                      f"{len(problems) - len(errors_only(problems))} warning(s)")
    if errors_only(problems):
        raise typer.Exit(2)


@blueprint.command("import")
@handle_errors
def import_(directory: Path = CityDir, json_out: bool = typer.Option(False, "--json")) -> None:
    """Import a city's blueprints: new versions for what changed; nothing at all when any file is wrong."""
    rep = container().blueprints.import_dir(directory, actor="cli")
    if json_out:
        return print_json(rep.as_dict())
    console.print(f"schools: {len(rep.schools_added)} added, {len(rep.schools_changed)} changed, "
                  f"{len(rep.schools_unchanged)} unchanged")
    for p in rep.profiles_changed:
        console.print(f"  new profile version {p['identifier']} v{p['version']}")
    for w in rep.warnings:
        console.print(w, style="yellow", highlight=False, soft_wrap=True, markup=False)


@blueprint.command("show")
@handle_errors
def show(school: str, version: Optional[int] = None) -> None:
    """A school's merged blueprint (secrets masked), as JSON."""
    print_json(container().blueprints.show(school, version))


@blueprint.command("diff")
@handle_errors
def diff(school: str, old: Optional[int] = typer.Option(None, "--from"), new: Optional[int] = typer.Option(None, "--to"),
         json_out: bool = typer.Option(False, "--json")) -> None:
    """What changed between two blueprint versions (default: the last two)."""
    d = container().blueprints.diff(school, old, new)
    if json_out:
        return print_json(d)
    console.print(f"{school}: v{d['from']} → v{d['to']}")
    for c in d["changes"]:
        console.print(f"  {c['change']:8} {c['key']}: {c.get('old', '')!s} → {c.get('new', '')!s}", highlight=False)


@blueprint.command("push")
@handle_errors
def push(school: str, role: Optional[str] = None, json_out: bool = typer.Option(False, "--json")) -> None:
    """Queue what each of the school's iPads lacks (profiles, apps, settings) as one job."""
    from profiles.blueprint.models import ROLES

    if role is not None and role not in ROLES:
        raise ValidationFailed(f"--role must be one of {', '.join(ROLES)}")
    res = container().blueprint_push.push(school, actor="cli", roles=(role,) if role else ROLES)
    if json_out:
        return print_json(res)
    console.print(f"job {res['job_id']}: blueprint v{res['version']} for {res['devices']} device(s)")
    for cmd in res["commands"]:
        console.print(f"  {cmd['request_type']:20} {cmd['devices']:6} device(s)  {cmd['item'] or ''}")


@profiles.command("list")
@handle_errors
def list_(school: Optional[str] = None, json_out: bool = typer.Option(False, "--json")) -> None:
    """Profiles (latest version of each) of one school or all."""
    items = container().profiles.list(school)
    if json_out:
        return print_json(items)
    t = Table("id", "school", "role", "name", "version", "identifier")
    for p in items:
        t.add_row(str(p["id"]), p["school_id"] or "", p["role"] or "", p["name"], str(p["version"]), p["identifier"])
    console.print(t)


@profiles.command("build")
@handle_errors
def build(school: str = typer.Option(..., "--school"), role: str = typer.Option(..., "--role"),
          output: Path = typer.Option(..., "-o", "--output", help="a .mobileconfig (with --name) or a .zip"),
          name: Optional[str] = typer.Option(None, "--name", help="one profile: wifi, restrictions, ..."),
          city: Optional[Path] = typer.Option(None, "--city", help="build from this directory, not the database")) -> None:
    """Build and sign a school's profiles for a role."""
    from mdm import plist as plistlib
    from profiles.blueprint import load_city
    from profiles.profile import build_blueprint
    from profiles.signing import sign_profile

    c = container()
    bp = load_city(city).school(school) if city else c.blueprints.blueprint(school)[1]
    built = build_blueprint(bp, role, issuer=c.blueprints.issuer())
    chosen = [p for p in built.profiles if name in (None, p.name)]
    if not chosen:
        raise NotFound(f"no profile {name!r} for {school}/{role}; there are: {', '.join(built.names)}")
    signed = {p.name: sign_profile(plistlib.dumps(p.payload), c.pki.signing) for p in chosen}
    if name:
        output.write_bytes(signed[name])
    else:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for n, data in signed.items():
                z.writestr(f"{school}-{role}-{n}.mobileconfig", data)
        output.write_bytes(buf.getvalue())
    console.print(f"wrote {output} ({len(signed)} signed profile(s))")


@profiles.command("diff")
@handle_errors
def profiles_diff(school: str = typer.Option(..., "--school"), name: str = typer.Option(..., "--name"),
                  role: str = typer.Option(..., "--role"), old: Optional[int] = typer.Option(None, "--from"),
                  new: Optional[int] = typer.Option(None, "--to")) -> None:
    """Unified diff of two versions of a profile (secrets masked)."""
    from app.services.blueprints import profile_diff

    c = container()
    versions = c.profiles.versions(school, name, role)
    if not versions:
        raise NotFound(f"{school} has no {role} profile named {name!r}")
    by_v = {v["version"]: v for v in versions}
    to = new or max(by_v)
    frm = old or (to - 1 if to - 1 in by_v else None)
    if to not in by_v or (frm is not None and frm not in by_v):
        raise NotFound(f"versions available: {', '.join(map(str, sorted(by_v)))}")
    text = profile_diff(c.profiles.plist_of(by_v[frm]["id"]) if frm else None, c.profiles.plist_of(by_v[to]["id"]),
                        f"{by_v[to]['identifier']} v{frm or 0}→v{to}")
    console.print(text or "no differences", highlight=False, markup=False)
