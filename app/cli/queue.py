"""``schoolmdm command`` and ``schoolmdm push-profile``."""

from __future__ import annotations

import json
from typing import Optional

import typer

from app.cli.common import console, container, handle_errors, print_json
from app.services.commands import Target
from mdm.errors import ValidationFailed


def _params(pairs: list[str] | None) -> dict:
    out: dict = {}
    for p in pairs or []:
        if "=" not in p:
            raise ValidationFailed(f"--param takes KEY=VALUE, got {p!r}")
        k, v = p.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def _target(device: list[str] | None, school: str | None, role: str | None, all_devices: bool) -> Target:
    if sum(bool(x) for x in (device, school, all_devices)) != 1:
        raise ValidationFailed("name exactly one target: --device (repeatable), --school or --all")
    return Target(udids=tuple(device or ()), school_id=school, role=role, everyone=all_devices)


def register(app: typer.Typer) -> None:
    @app.command("command")
    @handle_errors
    def command(request_type: str,
                device: Optional[list[str]] = typer.Option(None, "--device", help="UDID (repeatable)"),
                school: Optional[str] = typer.Option(None, "--school"),
                role: Optional[str] = typer.Option(None, "--role"),
                all_devices: bool = typer.Option(False, "--all"),
                param: Optional[list[str]] = typer.Option(None, "--param", help="KEY=VALUE (JSON values allowed)"),
                json_out: bool = typer.Option(False, "--json")) -> None:
        """Queue a command (by Apple's RequestType) and push the devices."""
        c = container()
        res = c.commands.enqueue_request(request_type, _params(param), _target(device, school, role, all_devices),
                                         actor="cli")
        out = {"command_uuid": res.command_uuid, "request_type": res.request_type, "queued": res.count}
        print_json(out) if json_out else console.print(
            f"queued {res.request_type} {res.command_uuid} for {res.count} device(s)")

    @app.command("push-profile")
    @handle_errors
    def push_profile(name: str, school: str = typer.Option(..., "--school"),
                     role: Optional[str] = typer.Option(None, "--role"),
                     force: bool = typer.Option(False, "--force", help="also to devices that have this version"),
                     json_out: bool = typer.Option(False, "--json")) -> None:
        """Push a school's profile (latest version) to its enrolled iPads."""
        c = container()
        p = c.profiles.latest_by_name(school, name, role)
        res = c.profiles.push(p["id"], Target(school_id=school, role=role or p["role"]), actor="cli",
                              only_changed=not force)
        out = {"profile": p["identifier"], "version": p["version"], "command_uuid": res.command_uuid,
               "queued": res.count}
        print_json(out) if json_out else console.print(
            f"queued {p['identifier']} v{p['version']} for {res.count} device(s)")
