"""Roster (Apple School Manager CSV), rollout waves and device loans.

The roster tables mirror the six ASM SFTP files; ``asm_locations`` maps an ASM
location to a school. People are referenced by their ASM ``person_id``. Loans
keep a snapshot of the pupil (name, number, user name) so the history survives
the pupil leaving the roster.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db.models import TS, Base, BigId

ID = String(128)


class AsmLocation(Base):
    """An ASM location and the school it is (linked by id, or created from its name)."""

    __tablename__ = "asm_locations"
    location_id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    school_id: Mapped[str] = mapped_column(ForeignKey("schools.id"), index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(TS)


class RosterPupil(Base):
    __tablename__ = "roster_pupils"
    person_id: Mapped[str] = mapped_column(ID, primary_key=True)
    person_number: Mapped[str | None] = mapped_column(String(64), index=True)
    first_name: Mapped[str] = mapped_column(String(100))
    middle_name: Mapped[str | None] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    grade_level: Mapped[str | None] = mapped_column(String(32))
    email: Mapped[str | None] = mapped_column(String(255))
    sis_username: Mapped[str | None] = mapped_column(String(128), index=True)
    password_policy: Mapped[str | None] = mapped_column(String(2))
    location_id: Mapped[str] = mapped_column(ID)
    other_locations: Mapped[str | None] = mapped_column(Text)  # location_id_2.. as "a,b"
    school_id: Mapped[str] = mapped_column(ForeignKey("schools.id"), index=True)
    search: Mapped[str] = mapped_column(Text)  # casefolded name, number and user name
    updated_at: Mapped[dt.datetime] = mapped_column(TS)


class RosterTeacher(Base):
    __tablename__ = "roster_teachers"
    person_id: Mapped[str] = mapped_column(ID, primary_key=True)
    person_number: Mapped[str | None] = mapped_column(String(64))
    first_name: Mapped[str] = mapped_column(String(100))
    middle_name: Mapped[str | None] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str | None] = mapped_column(String(255))
    sis_username: Mapped[str | None] = mapped_column(String(128))
    location_id: Mapped[str] = mapped_column(ID)
    other_locations: Mapped[str | None] = mapped_column(Text)
    school_id: Mapped[str] = mapped_column(ForeignKey("schools.id"), index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(TS)


class RosterCourse(Base):
    __tablename__ = "roster_courses"
    course_id: Mapped[str] = mapped_column(ID, primary_key=True)
    course_number: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(200))
    location_id: Mapped[str] = mapped_column(ID)
    school_id: Mapped[str] = mapped_column(ForeignKey("schools.id"), index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(TS)


class RosterClass(Base):
    """A class; ``group_id`` is its Classroom BeaconID, stable per school across imports."""

    __tablename__ = "roster_classes"
    class_id: Mapped[str] = mapped_column(ID, primary_key=True)
    class_number: Mapped[str | None] = mapped_column(String(64))
    display_name: Mapped[str | None] = mapped_column(String(200))
    course_id: Mapped[str] = mapped_column(ForeignKey("roster_courses.course_id"), index=True)
    location_id: Mapped[str] = mapped_column(ID)
    school_id: Mapped[str] = mapped_column(ForeignKey("schools.id"), index=True)
    group_id: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[dt.datetime] = mapped_column(TS)
    __table_args__ = (UniqueConstraint("school_id", "group_id", name="uq_roster_classes_school_group"),)


class RosterMember(Base):
    """A teacher (``instructor_id``..) or pupil (``rosters.csv``) of a class."""

    __tablename__ = "roster_members"
    class_id: Mapped[str] = mapped_column(ForeignKey("roster_classes.class_id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(16), primary_key=True)  # teacher | pupil
    person_id: Mapped[str] = mapped_column(ID, primary_key=True)
    roster_id: Mapped[str | None] = mapped_column(ID)  # rosters.csv roster_id (pupils)
    position: Mapped[int] = mapped_column(Integer, default=0)  # instructor column 1, 2, 3, ...
    __table_args__ = (Index("ix_roster_members_person", "person_id"),)


class RolloutSchool(Base):
    """A school's place in the rollout: priority (1 = first) and how many iPads it is to get."""

    __tablename__ = "rollout_schools"
    school_id: Mapped[str] = mapped_column(ForeignKey("schools.id"), primary_key=True)
    priority: Mapped[int | None] = mapped_column(Integer)
    planned: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[dt.datetime] = mapped_column(TS)


class Wave(Base):
    __tablename__ = "waves"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    created_by: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(TS)


class WaveDevice(Base):
    """A serial delivered to a school in a wave; a serial is delivered once."""

    __tablename__ = "wave_devices"
    serial: Mapped[str] = mapped_column(String(64), primary_key=True)
    wave_id: Mapped[int] = mapped_column(ForeignKey("waves.id"), index=True)
    school_id: Mapped[str] = mapped_column(ForeignKey("schools.id"), index=True)


class Loan(Base):
    """An iPad lent to a pupil; returned loans are kept as history."""

    __tablename__ = "loans"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    udid: Mapped[str] = mapped_column(ForeignKey("devices.udid"), index=True)
    serial: Mapped[str | None] = mapped_column(String(64))
    school_id: Mapped[str | None] = mapped_column(String(64))
    pupil_id: Mapped[str] = mapped_column(ID, index=True)  # roster person_id (no FK: history outlives it)
    pupil_name: Mapped[str] = mapped_column(String(300))
    person_number: Mapped[str | None] = mapped_column(String(64))
    sis_username: Mapped[str | None] = mapped_column(String(128))
    search: Mapped[str] = mapped_column(Text)  # casefolded name, number and user name
    lent_at: Mapped[dt.datetime] = mapped_column(TS)
    lent_by: Mapped[str] = mapped_column(String(128))
    returned_at: Mapped[dt.datetime | None] = mapped_column(TS)
    returned_by: Mapped[str | None] = mapped_column(String(128))
    return_note: Mapped[str | None] = mapped_column(String(500))
    erase_job_id: Mapped[str | None] = mapped_column(String(64))
    __table_args__ = (
        # at most one open loan per device and per pupil
        Index("uq_loans_open_device", "udid", unique=True,
              postgresql_where=text("returned_at IS NULL"), sqlite_where=text("returned_at IS NULL")),
        Index("uq_loans_open_pupil", "pupil_id", unique=True,
              postgresql_where=text("returned_at IS NULL"), sqlite_where=text("returned_at IS NULL")),
    )
