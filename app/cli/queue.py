"""``schoolmdm command`` and ``schoolmdm push-profile``: queue bulk jobs through ``/api/v1``."""

from __future__ import annotations

import json
from typing import Optional

import typer

from app.cli.apiclient import CaFileOpt, JsonOpt, ServerOpt, TokenOpt, connect, path
from app.cli.common import EXIT_NOT_FOUND, EXIT_USAGE, CliError, handle_errors, print_json, say
from app.cli.jobs import WaitOpt, finish, follow

ROLES = ("pupil", "teacher")


def parse_params(pairs: list[str] | None) -> dict:
    """``KEY=VALUE`` pairs; a VALUE that parses as JSON is taken as JSON (numbers, booleans, lists)."""
    out: dict = {}
    for p in pairs or []:
        k, sep, v = p.partition("=")
        if not sep or not k.strip():
            raise CliError(f"--param takes KEY=VALUE, got {p!r}", EXIT_USAGE)
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v
    return out


def _role(role: str | None) -> str | None:
    if role is not None and role not in ROLES:
        raise CliError(f"--role is pupil or teacher, got {role!r}", EXIT_USAGE)
    return role


def target_body(device: list[str] | None, school: str | None, role: str | None, all_devices: bool) -> dict:
    if sum(bool(x) for x in (device, school, all_devices)) != 1:
        raise CliError("name exactly one target: --device UDID (repeatable), --school ID or --all", EXIT_USAGE)
    if role and not school:
        raise CliError("--role needs --school", EXIT_USAGE)
    if device:
        return {"devices": list(device)}
    if school:
        return {"school": school, "role": _role(role)}
    return {"all_devices": True}


def register(app: typer.Typer) -> None:
    @app.command("command")
    @handle_errors
    def command(request_type: str = typer.Argument(..., help="Apple's RequestType, e.g. DeviceInformation"),
                device: Optional[list[str]] = typer.Option(None, "--device", help="UDID or serial (repeatable)"),
                school: Optional[str] = typer.Option(None, "--school", help="every enrolled device of a school"),
                role: Optional[str] = typer.Option(None, "--role", help="with --school: pupil | teacher"),
                all_devices: bool = typer.Option(False, "--all", help="every enrolled device (admin)"),
                param: Optional[list[str]] = typer.Option(None, "--param", help="KEY=VALUE, JSON values allowed "
                                                          "(repeatable)"),
                priority: int = typer.Option(0, min=-100, max=100, help="higher goes first"),
                wait: bool = typer.Option(False, "--wait", help="live progress until every device answered "
                                          "(exit code 6 unless every device acknowledged)"),
                timeout: Optional[float] = WaitOpt,
                server: ServerOpt = None, token: TokenOpt = None, ca_file: CaFileOpt = None,
                json_out: JsonOpt = False) -> None:
        """Queue a command for devices as a job and push them."""
        body = {"request_type": request_type, "params": parse_params(param), "priority": priority,
                **target_body(device, school, role, all_devices)}
        with connect(server, token, ca_file) as api:
            res = api.post("/commands", {k: v for k, v in body.items() if v is not None})
            job = res["job"]
            if not json_out:
                say(f"queued {res['request_type']} {res['command_uuid']} for {res['queued']} device(s) "
                    f"as job {job['id']}")
            if wait:
                return finish(follow(api, job, timeout=timeout), json_out)
        if json_out:
            print_json(res)

    @app.command("push-profile")
    @handle_errors
    def push_profile(name: str = typer.Argument(..., help="the profile's name, e.g. wifi"),
                     school: str = typer.Option(..., "--school", help="the school whose profile this is"),
                     role: Optional[str] = typer.Option(None, "--role", help="pupil | teacher"),
                     force: bool = typer.Option(False, "--force", help="also to devices that have this version"),
                     wait: bool = typer.Option(False, "--wait", help="live progress until every device answered"),
                     timeout: Optional[float] = WaitOpt,
                     server: ServerOpt = None, token: TokenOpt = None, ca_file: CaFileOpt = None,
                     json_out: JsonOpt = False) -> None:
        """Push the latest version of a school's profile to its enrolled iPads (those that lack it)."""
        _role(role)
        with connect(server, token, ca_file) as api:
            profiles = api.get(path("schools", school, "profiles"))["items"]
            p = pick_profile(profiles, school, name, role)
            body = {"only_changed": not force, **({"role": role} if role else {})}
            res = api.post(path("profiles", str(p["id"]), "push"), body)
            if not json_out:
                say(f"queued {res['profile']} v{res['version']} for {res['queued']} device(s) "
                    f"as job {res['job']['id']}")
            if wait:
                return finish(follow(api, res["job"], timeout=timeout), json_out)
        if json_out:
            print_json(res)


def pick_profile(profiles: list[dict], school: str, name: str, role: str | None) -> dict:
    """The school's profile called NAME: for ROLE if given (else the school-wide one), unambiguous."""
    named = [p for p in profiles if p["name"] == name]
    if role:
        named = [p for p in named if p["role"] == role] or [p for p in named if p["role"] is None]
    if not named:
        have = sorted({p["name"] for p in profiles})
        raise CliError(f"school {school!r} has no profile named {name!r}"
                       + (f" for role {role}" if role else "")
                       + (f" (it has: {', '.join(have)})" if have else " (it has none)"), EXIT_NOT_FOUND)
    if len(named) > 1:
        roles = ", ".join(sorted(p["role"] or "all" for p in named))
        raise CliError(f"school {school!r} has several profiles named {name!r} (roles {roles}); pick one with --role",
                       EXIT_USAGE)
    return named[0]
