"""Which payloads make up each per-concern profile of a school and role.

One profile per concern so that changing one key re-sends one profile:
``wifi``, ``restrictions``, ``webfilter``, ``homescreen``, ``notifications``,
``classroom``, ``passcode`` - plus ``exam`` (single-app mode), which is built
but only pushed on demand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from profiles.blueprint.models import Blueprint
from profiles.ids import organisation_uuid
from profiles.issuer import Issuer
from profiles.payloads.applock import applock_payload
from profiles.payloads.common import Namer, certificate_payloads, pem_to_ders, pkcs12_payload
from profiles.payloads.education import education_payloads
from profiles.payloads.homescreen import homescreen_payload
from profiles.payloads.notifications import notifications_payload
from profiles.payloads.passcode import passcode_payload
from profiles.payloads.restrictions import restrictions_payload
from profiles.payloads.webfilter import webfilter_payload
from profiles.payloads.wifi import wifi_payload

PROFILES: tuple[str, ...] = ("wifi", "restrictions", "webfilter", "homescreen", "notifications",
                             "classroom", "passcode")
ON_DEMAND: tuple[str, ...] = ("exam",)

LABELS = {
    "de": {"wifi": "WLAN", "restrictions": "Einschränkungen", "webfilter": "Webfilter",
           "homescreen": "Home-Bildschirm", "notifications": "Mitteilungen", "classroom": "Classroom",
           "passcode": "Code-Sperre", "exam": "Prüfungsmodus", "pupil": "Schüler*innen",
           "teacher": "Lehrkräfte", "device": "iPad"},
    "en": {"wifi": "Wi-Fi", "restrictions": "Restrictions", "webfilter": "Web filter",
           "homescreen": "Home Screen", "notifications": "Notifications", "classroom": "Classroom",
           "passcode": "Passcode", "exam": "Exam mode", "pupil": "Pupils", "teacher": "Teachers",
           "device": "iPad"},
}


class NeedsIssuer(Exception):
    """A profile needs identities (Classroom, EAP-TLS) and no issuer was given."""


@dataclass(frozen=True)
class Context:
    bp: Blueprint
    role: str
    issuer: Issuer | None = None
    user: str | None = None

    def label(self, key: str) -> str:
        lang = self.bp.settings.language.split("-")[0]
        return LABELS.get(lang, LABELS["en"])[key]

    def need_issuer(self, why: str) -> Issuer:
        if self.issuer is None:
            raise NeedsIssuer(why)
        return self.issuer


def _wifi(ctx: Context, namer: Namer) -> list[dict]:
    nets = ctx.bp.wifi_for(ctx.role)
    if not nets:
        return []
    anchors = {n.ssid: pem_to_ders(n.eap.ca_certificate) for n in nets if n.eap and n.eap.ca_certificate}
    out = certificate_payloads(namer, [d for ders in anchors.values() for d in ders])
    identity_uuid = None
    if any(n.eap and n.eap.method == "EAP-TLS" for n in nets):
        issuer = ctx.need_issuer("EAP-TLS Wi-Fi needs a client identity")
        cn = f"wifi.{ctx.bp.school_id}.{ctx.role}"
        _, p12 = issuer(cn)
        out.append(pkcs12_payload(namer, "wifi-identity", cn, p12, issuer.password))
        identity_uuid = namer.uuid_for("wifi-identity")
    out += [wifi_payload(namer, n, anchor_ders=anchors.get(n.ssid, ()), identity_uuid=identity_uuid)
            for n in nets]
    return out


def _one(p: dict | None) -> list[dict]:
    return [p] if p is not None else []


def _restrictions(ctx: Context, namer: Namer) -> list[dict]:
    r = ctx.bp.restrictions.get(ctx.role)
    return _one(restrictions_payload(namer, r, ctx.label("restrictions"))) if r else []


def _webfilter(ctx: Context, namer: Namer) -> list[dict]:
    wf = ctx.bp.web_filter.get(ctx.role)
    return _one(webfilter_payload(namer, wf, ctx.label("webfilter"))) if wf else []


def _homescreen(ctx: Context, namer: Namer) -> list[dict]:
    hs = ctx.bp.home_screen.get(ctx.role)
    return _one(homescreen_payload(namer, hs, ctx.label("homescreen"))) if hs else []


def _notifications(ctx: Context, namer: Namer) -> list[dict]:
    ns = ctx.bp.notifications.get(ctx.role)
    return _one(notifications_payload(namer, ns, ctx.label("notifications"))) if ns else []


def _passcode(ctx: Context, namer: Namer) -> list[dict]:
    p = ctx.bp.passcode.get(ctx.role)
    return [passcode_payload(namer, p, ctx.label("passcode"))] if p else []


def _classroom(ctx: Context, namer: Namer) -> list[dict]:
    cr = ctx.bp.classroom
    if cr is None or not cr.classes:
        return []
    issuer = ctx.need_issuer("Classroom needs leader/member identities")
    return education_payloads(
        namer, classroom=cr, role=ctx.role, school=ctx.bp.school, organisation=ctx.bp.organisation,
        organisation_uuid=organisation_uuid(ctx.bp.city), issuer=issuer, user=ctx.user,
        generic_name=f"{ctx.bp.school.name} {ctx.label('device')} ({ctx.label(ctx.role)})",
        display_name=ctx.label("classroom"))


def _exam(ctx: Context, namer: Namer) -> list[dict]:
    exam = ctx.bp.exam.get(ctx.role)
    return [applock_payload(namer, exam, ctx.label("exam"))] if exam else []


BUILDERS: dict[str, Callable[[Context, Namer], list[dict]]] = {
    "wifi": _wifi, "restrictions": _restrictions, "webfilter": _webfilter, "homescreen": _homescreen,
    "notifications": _notifications, "classroom": _classroom, "passcode": _passcode, "exam": _exam,
}
