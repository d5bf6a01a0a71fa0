"""Lending iPads to pupils: lend, return (optionally queueing EraseDevice), find, history.

A device has at most one open loan and a pupil at most one open loan (partial
unique indexes back the checks). A loan keeps a snapshot of the pupil (name,
person_number, sis_username), refreshed by roster imports while it is open, so
the history survives the pupil leaving the roster. Every change is audited.
"""

from __future__ import annotations

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError

from app.db.models import Device
from app.db.models_roster import Loan, RosterPupil
from app.services.clock import Clock, utcnow
from app.services.commands import Target
from app.services.roster import like_words
from app.services.roster_model import full_name, search_text
from app.storage.sql_base import SQLStore
from mdm.commands import new_command
from mdm.errors import Conflict, NotFound

#: what a returned loaner is erased with before it re-enrolls through ADE
ERASE_PARAMS = {"DisallowProximitySetup": True}


def _iso(t):
    return t.isoformat() if t else None


def loan_doc(loan: Loan) -> dict:
    return {"id": loan.id, "udid": loan.udid, "serial": loan.serial, "school_id": loan.school_id,
            "pupil": {"person_id": loan.pupil_id, "name": loan.pupil_name, "person_number": loan.person_number,
                      "sis_username": loan.sis_username},
            "lent_at": _iso(loan.lent_at), "lent_by": loan.lent_by, "returned_at": _iso(loan.returned_at),
            "returned_by": loan.returned_by, "return_note": loan.return_note, "erase_job_id": loan.erase_job_id,
            "active": loan.returned_at is None}


def device_loans(s, udid: str, history: int = 100) -> tuple[dict | None, list[dict]]:
    """(the open loan, every loan newest first) of a device, inside the caller's transaction."""
    loans = [loan_doc(x) for x in s.execute(select(Loan).where(Loan.udid == udid)
                                            .order_by(Loan.id.desc()).limit(history)).scalars()]
    return next((x for x in loans if x["active"]), None), loans


def on_loan_to(q: str):
    """Condition on ``Device.udid``: the device is on loan to a pupil matching ``q`` (name, number, user name)."""
    return Device.udid.in_(select(Loan.udid).where(Loan.returned_at.is_(None), like_words(Loan.search, q)))


def _device(s, ident: str) -> Device:
    d = s.get(Device, ident) or s.execute(select(Device).where(Device.serial == ident)
                                          .order_by(Device.created_at.desc())).scalars().first()
    if d is None:
        raise NotFound(f"no device {ident!r} (serial or UDID)")
    return d


def _pupil(s, ident: str) -> RosterPupil:
    """A pupil by exact person_id, else sis_username, else person_number."""
    p = s.get(RosterPupil, ident)
    if p is not None:
        return p
    for col in (RosterPupil.sis_username, RosterPupil.person_number):
        found = s.execute(select(RosterPupil).where(col == ident).limit(3)).scalars().all()
        if len(found) > 1:
            raise Conflict(f"{ident!r} names more than one pupil; use the person_id",
                           details={"pupils": [x.person_id for x in found]})
        if found:
            return found[0]
    raise NotFound(f"no pupil {ident!r} in the roster (person_id, sis_username or person_number)")


class LoanService(SQLStore):
    def __init__(self, sessions, jobs, audit, *, clock: Clock = utcnow) -> None:
        super().__init__(sessions)
        self.jobs = jobs
        self.audit = audit
        self.clock = clock

    def device_school(self, ident: str) -> str | None:
        with self.tx() as s:
            return _device(s, ident).school_id

    def pupil_school(self, ident: str) -> str:
        with self.tx() as s:
            return _pupil(s, ident).school_id

    def lend(self, *, device: str, pupil: str, actor: str) -> dict:
        try:
            with self.tx() as s:
                d, p = _device(s, device), _pupil(s, pupil)
                for cond, what in ((Loan.udid == d.udid, f"iPad {d.serial or d.udid} is"),
                                   (Loan.pupil_id == p.person_id, f"pupil {p.person_id!r} has an iPad")):
                    open_ = s.execute(select(Loan).where(cond, Loan.returned_at.is_(None))).scalars().first()
                    if open_ is not None:
                        raise Conflict(f"{what} on loan already (loan {open_.id}: {open_.serial or open_.udid} to "
                                       f"{open_.pupil_name}); return it first", details={"loan": open_.id})
                name = full_name({"first_name": p.first_name, "middle_name": p.middle_name, "last_name": p.last_name})
                loan = Loan(udid=d.udid, serial=d.serial, school_id=d.school_id or p.school_id, pupil_id=p.person_id,
                            pupil_name=name, person_number=p.person_number, sis_username=p.sis_username,
                            search=search_text(name, p.person_number, p.sis_username), lent_at=self.clock(),
                            lent_by=actor)
                s.add(loan)
                s.flush()
                doc = loan_doc(loan)
        except IntegrityError:
            raise Conflict("the iPad or the pupil got another loan at the same time; look again") from None
        self.audit.record(actor, "loan:lend", f"device:{doc['serial'] or doc['udid']}",
                          {"loan": doc["id"], "pupil": doc["pupil"]["person_id"], "udid": doc["udid"]})
        return doc

    def get(self, loan_id: int) -> dict:
        with self.tx() as s:
            loan = s.get(Loan, loan_id)
            if loan is None:
                raise NotFound(f"no loan {loan_id}")
            return loan_doc(loan)

    def return_(self, loan_id: int, *, actor: str, erase: bool = False, note: str | None = None) -> dict:
        """Mark a loan returned; with ``erase`` queue EraseDevice (the iPad then re-enrolls through ADE)."""
        with self.tx() as s:
            loan = s.get(Loan, loan_id)
            if loan is None:
                raise NotFound(f"no loan {loan_id}")
            if loan.returned_at is not None:
                raise Conflict(f"loan {loan_id} was returned already ({loan.returned_at.isoformat()})")
            d = s.get(Device, loan.udid)
            if erase and (d is None or d.enrollment_state != "enrolled"):
                raise Conflict(f"iPad {loan.serial or loan.udid} is not enrolled: it cannot be erased remotely; "
                               "return it without erase and reset it by hand")
        job = None
        if erase:
            job = self.jobs.submit(new_command("EraseDevice", ERASE_PARAMS), Target(udids=(loan.udid,)), actor=actor)
        with self.tx() as s:
            done = s.execute(update(Loan).where(Loan.id == loan_id, Loan.returned_at.is_(None)).values(
                returned_at=self.clock(), returned_by=actor, return_note=note,
                erase_job_id=job["id"] if job else None)).rowcount
            if not done:
                raise Conflict(f"loan {loan_id} was returned at the same time by someone else")
            doc = loan_doc(s.get(Loan, loan_id))
        self.audit.record(actor, "loan:return", f"device:{doc['serial'] or doc['udid']}",
                          {"loan": loan_id, "erase": erase, "job": job["id"] if job else None, "note": note})
        return doc | {"erase_job": job}

    def list(self, *, pupil: str | None = None, device: str | None = None, q: str | None = None,
             active: bool | None = None, school_id: str | None = None, schools: list[str] | None = None,
             limit: int = 50, offset: int = 0) -> dict:
        """Loans, newest first: by pupil (name words, number, user name or person_id), device (serial or
        UDID), ``q`` (either), open or returned, school."""
        cond = []
        if pupil:
            cond.append(or_(Loan.pupil_id == pupil.strip(), like_words(Loan.search, pupil)))
        if device:
            cond.append(or_(Loan.serial == device.strip(), Loan.udid == device.strip()))
        if q:
            cond.append(or_(Loan.serial == q.strip(), Loan.udid == q.strip(), Loan.pupil_id == q.strip(),
                            like_words(Loan.search, q)))
        if active is not None:
            cond.append(Loan.returned_at.is_(None) if active else Loan.returned_at.is_not(None))
        if school_id:
            cond.append(Loan.school_id == school_id)
        if schools is not None:
            cond.append(Loan.school_id.in_(schools))
        with self.tx() as s:
            total = s.execute(select(func.count()).select_from(Loan).where(*cond)).scalar_one()
            items = [loan_doc(x) for x in s.execute(select(Loan).where(*cond).order_by(Loan.id.desc())
                                                    .limit(limit).offset(offset)).scalars()]
        return {"items": items, "total": total, "limit": limit, "offset": offset}
