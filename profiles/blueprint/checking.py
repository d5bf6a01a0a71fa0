"""``check(dir)``: every problem of a city's blueprints, errors and warnings.

Errors are what stops ``load_city``. Warnings come from building every school
for every role and checking each payload and command against Apple's schema
(a key iOS does not know, a key that needs a newer iOS or a supervised
device, ...), pointed back at the blueprint line that caused them, plus a few
sanity checks (apps placed on the home screen that nothing installs, a
passcode policy that erases pupils' iPads, ...).
"""

from __future__ import annotations

import datetime as dt
from functools import cache
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from profiles.blueprint.errors import Problem, format_key
from profiles.blueprint.loader import City, load_problems
from profiles.blueprint.models import ROLES, Blueprint
from profiles.blueprint.restrictions import FRIENDLY_FOR_APPLE
from profiles.schema.checker import Issue, check_command, check_payload

#: which blueprint section each profile comes from (role appended where per role)
_SECTIONS = {"wifi": ("wifi",), "restrictions": ("restrictions",), "webfilter": ("web_filter",),
             "homescreen": ("home_screen",), "notifications": ("notifications",),
             "classroom": ("classroom",), "passcode": ("passcode",), "exam": ("exam",)}
_PER_ROLE = {"restrictions", "webfilter", "homescreen", "notifications", "passcode", "exam"}


@cache
def _placeholder_ca() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "schoolmdm check placeholder")])
    now = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


class _PlaceholderIssuer:
    """Stands in for a CA while checking: the schema looks at types, not at key material."""

    password = ""

    @property
    def anchors(self) -> tuple[bytes, ...]:
        return (_placeholder_ca(),)

    def __call__(self, cn: str) -> tuple[bytes, bytes]:
        return b"", b""


def _restriction_path(bp: Blueprint, role: str, issue: Issue) -> tuple:
    apple_key = next((p for p in issue.path[2:3] if isinstance(p, str)), None)
    r = bp.restrictions.get(role)
    if r is not None and apple_key in r.apple:
        return ("restrictions", role, "apple", apple_key)
    friendly = FRIENDLY_FOR_APPLE.get(apple_key or "")
    return ("restrictions", role, friendly) if friendly else ("restrictions", role)


def _profile_path(bp: Blueprint, role: str, name: str, issue: Issue) -> tuple:
    if name == "restrictions" and len(issue.path) > 2:
        return _restriction_path(bp, role, issue)
    if not issue.path or issue.path[0] != "PayloadContent":
        return ("settings", "supervised") if issue.code == "supervised_only" else _SECTIONS[name]
    return _SECTIONS[name] + ((role,) if name in _PER_ROLE else ())


def _command_path(bp: Blueprint, role: str, cmd: dict) -> tuple:
    if cmd.get("RequestType") == "Settings":
        return ("settings", "timezone")
    ident = cmd.get("iTunesStoreID") or cmd.get("Identifier") or cmd.get("ManifestURL")
    for i, app in enumerate(bp.apps):
        if ident in (app.itunes_id, app.bundle_id, app.manifest_url) and role in app.roles:
            return ("apps", i)
    return ("apps",)


def _warn(city: City, school_id: str, path: tuple, message: str) -> Problem:
    mark = city.locate(school_id, path)
    return Problem(mark.file if mark else None, mark.line if mark else None, format_key(path),
                   message, "warning")


def _schema_warnings(city: City, school_id: str, bp: Blueprint) -> list[Problem]:
    from profiles.profile import build_blueprint  # late: profile imports the blueprint package

    out: list[Problem] = []
    supervised, ios = bp.settings.supervised, bp.settings.min_ios
    for role in ROLES:
        build = build_blueprint(bp, role, issuer=_PlaceholderIssuer())
        for p in build.profiles + ([build.exam] if build.exam else []):
            for issue in check_payload(p.payload, supervised=supervised, ios=ios):
                path = _profile_path(bp, role, p.name, issue)
                out.append(_warn(city, school_id, path, f"Apple schema ({issue.severity}): "
                                 f"{issue.where} {issue.key}: {issue.message}"))
        for cmd in build.commands:
            for issue in check_command(cmd, supervised=supervised, ios=ios):
                out.append(_warn(city, school_id, _command_path(bp, role, cmd),
                                 f"Apple schema ({issue.severity}): {issue.where} {issue.key}: {issue.message}"))
    return out


def _sanity_warnings(city: City, school_id: str, bp: Blueprint) -> list[Problem]:
    out: list[Problem] = []
    for role in ROLES:
        installed = {a.bundle_id for a in bp.apps_for(role) if a.state == "present"}

        def missing(bundle_id: str, path: tuple) -> None:
            if not bundle_id.startswith("com.apple.") and bundle_id not in installed:
                out.append(_warn(city, school_id, path, f"{bundle_id} is not among the {role} apps "
                                 "this blueprint installs"))

        hs = bp.home_screen.get(role)
        if hs is not None:
            for where, items in [(("dock",), hs.dock)] + [(("pages", i), pg) for i, pg in enumerate(hs.pages)]:
                for j, item in enumerate(items):
                    for app in [item.app] if item.app else [a.app for pg in item.pages for a in pg]:
                        missing(app, ("home_screen", role) + where + (j,))
        for bundle_id in bp.notifications.get(role) or {}:
            missing(bundle_id, ("notifications", role, bundle_id))
        exam = bp.exam.get(role)
        if exam is not None:
            missing(exam.bundle_id, ("exam", role, "bundle_id"))
        pc = bp.passcode.get(role)
        if role == "pupil" and pc is not None and pc.max_failed_attempts is not None:
            out.append(_warn(city, school_id, ("passcode", role, "max_failed_attempts"),
                             f"iOS erases the iPad after {pc.max_failed_attempts} wrong passcodes"))
    if bp.settings.device_name and "{serial}" not in bp.settings.device_name:
        out.append(_warn(city, school_id, ("settings", "device_name"),
                         "without {serial} several iPads get the same name"))
    for i, c in enumerate(bp.classroom.classes if bp.classroom else []):
        if not c.teachers:
            out.append(_warn(city, school_id, ("classroom", "classes", i), f"class {c.name!r} has no teacher"))
    return out


def check_city(city: City) -> list[Problem]:
    """Warnings of an already loaded city."""
    problems: list[Problem] = []
    for school_id, bp in city.schools.items():
        problems += _schema_warnings(city, school_id, bp)
        problems += _sanity_warnings(city, school_id, bp)
    return problems


def check(directory: Path | str) -> list[Problem]:
    """Every error and warning of the city in ``directory``, each with file, line, key,
    message and (where there is one) a suggestion. Errors first."""
    city, problems = load_problems(directory)
    if city is not None:
        problems = problems + check_city(city)
    seen, out = set(), []
    for p in problems:
        k = (p.file, p.line, p.key, p.message, p.severity)
        if k not in seen:
            seen.add(k)
            out.append(p)
    return sorted(out, key=lambda p: (p.severity != "error", p.file or "", p.line or 0, p.key))
