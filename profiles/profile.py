"""Configuration profiles for a school and role, with deterministic ids and content hashes.

``build_school(city, school_id, role)`` returns one ``BuiltProfile`` per concern
(see ``profiles.concerns``) plus the commands the blueprint implies.

Identifiers: ``PayloadIdentifier`` is ``<prefix>.<school>.<role>.<concern>`` and
``PayloadUUID`` a UUIDv5 of (city, school, role, concern); payloads inside are
named from those. A rebuilt profile therefore replaces the installed one.

Content hash: SHA-256 of the unsigned, key-sorted XML plist with issued key
material blanked (the ``PayloadContent`` and ``Password`` of every
``com.apple.security.pkcs12`` payload). Identities differ each time they are
issued (an issuer with an ``IdentityStore`` reuses them, but a new CA or a
renewal issues new ones), and they are not blueprint
*content*: hashing them would make the Classroom and EAP-TLS profiles look
changed and re-send them to every iPad. With them blanked the hash moves only
when the blueprint (or an anchor certificate) changes; a profile whose hash is
unchanged keeps the version, and the identities, already stored and installed.
The plist is written once: the blanked bytes are cut out of it (``content_hash``).
"""

from __future__ import annotations

import copy
import difflib
import hashlib
from dataclasses import dataclass, field

from mdm import plist
from profiles.blueprint.errors import BlueprintError, Problem
from profiles.blueprint.loader import City
from profiles.blueprint.models import ROLES, Blueprint
from profiles.commands import school_commands
from profiles.concerns import BUILDERS, ON_DEMAND, PROFILES, Context, NeedsIssuer
from profiles.ids import profile_identifier, profile_uuid
from profiles.issuer import Issuer
from profiles.payloads.common import Namer

ISSUED_TYPES = frozenset({"com.apple.security.pkcs12"})


@dataclass(frozen=True)
class BuiltProfile:
    name: str  # the concern: wifi, restrictions, ...
    identifier: str
    uuid: str
    payload: dict  # the Configuration profile as a plist dict
    plist: bytes  # unsigned XML plist, keys sorted
    content_hash: str  # sha256 hex of the plist without issued key material


@dataclass(frozen=True)
class SchoolBuild:
    school_id: str
    role: str
    profiles: list[BuiltProfile]
    commands: list[dict]
    exam: BuiltProfile | None = None  # single-app exam mode: push on demand, remove afterwards
    skipped: dict[str, str] = field(default_factory=dict)  # concern -> why it was not built
    locale: dict[str, str] = field(default_factory=dict)  # ADE profile language/region

    def profile(self, name: str) -> BuiltProfile:
        for p in self.profiles:
            if p.name == name:
                return p
        if self.exam is not None and self.exam.name == name:
            return self.exam
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.profiles]


def configuration_profile(*, identifier: str, uuid: str, display_name: str, organisation: str,
                          content: list[dict], removal_disallowed: bool,
                          description: str | None = None) -> dict:
    profile = {
        "PayloadType": "Configuration",
        "PayloadVersion": 1,
        "PayloadIdentifier": identifier,
        "PayloadUUID": uuid,
        "PayloadDisplayName": display_name,
        "PayloadOrganization": organisation,
        "PayloadScope": "System",
        "PayloadContent": content,
    }
    if description:
        profile["PayloadDescription"] = description
    if removal_disallowed:
        profile["PayloadRemovalDisallowed"] = True
    return profile


def stable_view(profile: dict) -> dict:
    """The profile with issued key material blanked: what the content hash covers."""
    view = copy.copy(profile)
    content = []
    for item in profile.get("PayloadContent", []):
        if isinstance(item, dict) and item.get("PayloadType") in ISSUED_TYPES:
            item = {**item, "PayloadContent": b"", "Password": ""}
        content.append(item)
    view["PayloadContent"] = content
    return view


def content_hash(profile: dict, plist_bytes: bytes | None = None) -> str:
    """SHA-256 hex of ``plist.dumps(stable_view(profile))``.

    With ``plist_bytes`` (``plist.dumps(profile)``, already written) the stable view's bytes
    are cut out of them instead of serializing the profile a second time.
    """
    stable = _stable_bytes(profile, plist_bytes) if plist_bytes is not None else None
    if stable is None:
        stable = plist.dumps(stable_view(profile))
    return hashlib.sha256(stable).hexdigest()


# The issued key material in the written profile, found in the bytes: the canonical XML puts
# the items of the top-level PayloadContent array at two tabs, their keys at three, and a '<'
# in a string is always escaped, so these markers are only ever markup. What is blanked is
# exactly what stable_view blanks; anything else (no PayloadContent array, an issued payload
# without data or password, a count that does not add up) falls back to serializing the view.
_ARRAY_START = b"\n\t<key>PayloadContent</key>\n\t<array>\n"
_ARRAY_END = b"\n\t</array>\n"
_ITEM_START, _ITEM_END = b"\n\t\t<dict>\n", b"\n\t\t</dict>\n"
_ISSUED_MARKERS = tuple(b"\n\t\t\t<key>PayloadType</key>\n\t\t\t<string>%s</string>\n" % t.encode()
                        for t in sorted(ISSUED_TYPES))
_DATA = b"\n\t\t\t<key>PayloadContent</key>\n\t\t\t<data>\n"
_DATA_END = b"\t\t\t</data>\n"
_PASSWORD = b"\n\t\t\t<key>Password</key>\n\t\t\t<string>"
_PASSWORD_END = b"</string>\n"


def _stable_bytes(profile: dict, written: bytes) -> bytes | None:
    content = profile.get("PayloadContent")
    if type(content) not in (list, tuple):
        return None
    issued = 0
    for item in content:
        if isinstance(item, dict) and item.get("PayloadType") in ISSUED_TYPES:
            if type(item.get("PayloadContent")) not in (bytes, bytearray) or type(item.get("Password")) is not str:
                return None
            issued += 1
    if not issued:
        return written
    start = written.find(_ARRAY_START)
    end = written.find(_ARRAY_END, start)
    if start < 0 or end < 0:
        return None
    cuts: list[tuple[int, int]] = []  # (from, to): bytes to drop
    for marker in _ISSUED_MARKERS:
        at = written.find(marker, start, end)
        while at >= 0:
            item_start = written.rfind(_ITEM_START, start, at)
            item_end = written.find(_ITEM_END, at, end + 1)
            data = written.find(_DATA, item_start, item_end)
            data_end = written.find(_DATA_END, data, item_end)
            password = written.find(_PASSWORD, item_start, item_end)
            password_end = written.find(_PASSWORD_END, password, item_end)
            if min(item_start, item_end, data, data_end, password, password_end) < 0:
                return None
            cuts += [(data + len(_DATA), data_end), (password + len(_PASSWORD), password_end)]
            at = written.find(marker, item_end, end)
    if len(cuts) != 2 * issued:
        return None
    parts, pos = [], 0
    for cut_from, cut_to in sorted(cuts):
        parts.append(written[pos:cut_from])
        pos = cut_to
    parts.append(written[pos:])
    return b"".join(parts)


def built_profile(name: str, profile: dict) -> BuiltProfile:
    written = plist.dumps(profile)
    return BuiltProfile(name, profile["PayloadIdentifier"], profile["PayloadUUID"], profile,
                        written, content_hash(profile, written))


def _check_role(role: str) -> None:
    if role not in ROLES:
        near = difflib.get_close_matches(role, ROLES, n=1)
        raise BlueprintError(Problem(None, None, "role", f"unknown role {role!r}; use {' or '.join(ROLES)}",
                                     suggestion=near[0] if near else None))


def build_profile(bp: Blueprint, role: str, name: str, *, issuer: Issuer | None = None,
                  user: str | None = None) -> BuiltProfile | None:
    """One concern's profile, or None when the blueprint has nothing for it.

    Raises ``NeedsIssuer`` when the concern needs identities and ``issuer`` is None.
    """
    _check_role(role)
    school_id = bp.school_id
    ctx = Context(bp, role, issuer, user)
    identifier = profile_identifier(bp.identifier_prefix, school_id, role, name)
    uuid = profile_uuid(bp.city, school_id, role, name)
    content = BUILDERS[name](ctx, Namer(identifier, uuid))
    if not content:
        return None
    profile = configuration_profile(
        identifier=identifier, uuid=uuid,
        display_name=f"{bp.school.name} · {ctx.label(name)} ({ctx.label(role)})",
        organisation=bp.organisation, content=content, removal_disallowed=role == "pupil",
        description=f"{bp.organisation}, {bp.city}")
    return built_profile(name, profile)


def build_blueprint(bp: Blueprint, role: str, *, issuer: Issuer | None = None,
                    user: str | None = None) -> SchoolBuild:
    """Every profile and command of a (merged) school blueprint for one role."""
    _check_role(role)
    built: list[BuiltProfile] = []
    skipped: dict[str, str] = {}
    exam = None
    for name in PROFILES + ON_DEMAND:
        try:
            p = build_profile(bp, role, name, issuer=issuer, user=user)
        except NeedsIssuer as e:
            skipped[name] = f"{e}; pass issuer="
            continue
        if p is None:
            continue
        if name in ON_DEMAND:
            exam = p
        else:
            built.append(p)
    locale = {"language": bp.settings.language, "region": bp.settings.region}
    return SchoolBuild(bp.school_id, role, built, school_commands(bp, role), exam, skipped, locale)


def build_school(city: City, school_id: str, role: str, *, issuer: Issuer | None = None,
                 user: str | None = None) -> SchoolBuild:
    """All profiles (plist dicts and bytes) and commands for ``school_id`` and ``role``.

    ``issuer`` issues Classroom and EAP-TLS identities (see ``profiles.issuer``);
    without it those profiles are skipped and listed in ``SchoolBuild.skipped``.
    ``user`` personalises the Classroom profile for one pupil or teacher.
    """
    return build_blueprint(city.school(school_id), role, issuer=issuer, user=user)
