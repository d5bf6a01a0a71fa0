"""``com.apple.education``: Apple Classroom, with its peer certificates.

Teacher iPads are *leaders*, pupil iPads *members*. Each device gets an identity
(``com.apple.security.pkcs12``) whose common name starts with ``leader`` or
``member`` (Apple requires the prefix), referenced by ``PayloadCertificateUUID``.
Member devices also get the issuing CA as ``com.apple.security.root`` (or
``pkcs1``) and reference it from ``LeaderPayloadCertificateAnchorUUID`` and
``MemberPayloadCertificateAnchorUUID``; Apple ignores those keys on leader
devices, so they are left out there.

Who the device's user is: with ``user`` the payload is personal (a teacher's
classes, or a pupil's classes and their teachers). Without it the device is a
shared class-set iPad: a generic user ``<school>-<role>`` who leads (teacher) or
belongs to (pupil) every class of the school.
"""

from __future__ import annotations

from profiles.blueprint.errors import BlueprintError, Problem
from profiles.blueprint.models import School
from profiles.blueprint.classroom import Classroom, Person, SchoolClass
from profiles.ids import slug
from profiles.issuer import Issuer, anchors_of
from profiles.payloads.common import Namer, certificate_key, certificate_payloads, payload, pkcs12_payload

PAYLOAD_TYPE = "com.apple.education"


def generic_user(school: School, role: str, name: str) -> Person:
    return Person(id=f"{school.id}-{role}", name=name)


def membership(classroom: Classroom, role: str, school: School, user: str | None,
               generic_name: str) -> tuple[Person, list[SchoolClass], list[Person], bool]:
    """(device user, their classes, the Users list, whether the user is generic)."""
    leads = role == "teacher"
    if user is None:
        me = generic_user(school, role, generic_name)
        classes = list(classroom.classes)
    else:
        classes = [c for c in classroom.classes if user in {p.id for p in (c.teachers if leads else c.pupils)}]
        if not classes:
            what = "leads" if leads else "is in"
            raise BlueprintError(Problem(None, None, "classroom.classes",
                                         f"{user!r} {what} no class of {school.id}"))
        me = next(p for c in classes for p in (c.teachers if leads else c.pupils) if p.id == user)
    people: dict[str, Person] = {me.id: me}
    for c in classes:
        for p in c.teachers + (c.pupils if leads else []):
            people.setdefault(p.id, p)
    return me, classes, list(people.values()), user is None


def _group(c: SchoolClass, me: Person, role: str, generic: bool) -> dict:
    leaders = [p.id for p in c.teachers]
    members = [p.id for p in c.pupils]
    if generic:
        (leaders if role == "teacher" else members).append(me.id)
    group: dict = {"BeaconID": c.group_id, "Name": c.name, "MemberIdentifiers": members}
    if c.description:
        group["Description"] = c.description
    if leaders:
        group["LeaderIdentifiers"] = leaders
    return group


def identity_cn(role: str, school_id: str, user_id: str) -> str:
    return f"{'leader' if role == 'teacher' else 'member'}.{school_id}.{slug(user_id)}"


def education_payloads(namer: Namer, *, classroom: Classroom, role: str, school: School,
                       organisation: str, organisation_uuid: str, issuer: Issuer,
                       user: str | None = None, generic_name: str = "iPad",
                       display_name: str = "Classroom") -> list[dict]:
    """Certificate payloads followed by the education payload."""
    me, classes, people, generic = membership(classroom, role, school, user, generic_name)
    anchors = anchors_of(issuer)
    out: list[dict] = []
    content: dict = {
        "OrganizationUUID": organisation_uuid,
        "OrganizationName": classroom.organisation or organisation,
        "UserIdentifier": me.id,
        "Users": [{"Identifier": p.id, "Name": p.name} for p in people],
        "Groups": [_group(c, me, role, generic) for c in classes],
    }
    if role == "pupil":
        out += certificate_payloads(namer, anchors)
        anchor_uuids = [namer.uuid_for(certificate_key(d)) for d in dict.fromkeys(anchors)]
        content["LeaderPayloadCertificateAnchorUUID"] = anchor_uuids
        content["MemberPayloadCertificateAnchorUUID"] = anchor_uuids
    cn = identity_cn(role, school.id, me.id)
    _, p12 = issuer(cn)
    out.append(pkcs12_payload(namer, "classroom-identity", cn, p12, issuer.password))
    content["PayloadCertificateUUID"] = namer.uuid_for("classroom-identity")
    out.append(payload(namer, "classroom", PAYLOAD_TYPE, display_name, content))
    return out
