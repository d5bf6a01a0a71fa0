"""Roster import (Apple School Manager CSV): idempotent, all-or-nothing, zip or folder; the Classroom
profile of a school follows its roster."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.db.models import Profile, School
from app.db.models_roster import AsmLocation, RosterClass
from app.services.roster_files import RosterError
from app.services.roster_model import map_locations, school_slug
from app.settings import get_settings
from mdm import plist
from tests.support.fixtures import snapshot

ROOT = Path(__file__).resolve().parents[1]
ROSTER = ROOT / "examples" / "roster"
CITY = ROOT / "examples" / "city"


@pytest.fixture
def roster(tmp_path) -> Path:
    d = tmp_path / "roster"
    shutil.copytree(ROSTER, d)
    return d


@pytest.fixture
def schools(container):
    for sid, name in (("gs-lindenhof", "Grundschule Am Lindenhof"), ("gy-schiller", "Schiller-Gymnasium")):
        container.schools.upsert(sid, name, None, container.clock())


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def append(path: Path, line: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + line + "\n", encoding="utf-8")


def zipped(folder: Path, target: Path, *, subdir: str = "") -> Path:
    with zipfile.ZipFile(target, "w") as z:
        for f in sorted(folder.glob("*.csv")):
            z.write(f, f"{subdir}{f.name}")
    return target


def latest(container, identifier: str) -> Profile:
    with container.sessions() as s:
        return s.query(Profile).filter_by(identifier=identifier).order_by(Profile.version.desc()).first()


def test_sample_roster_imports_and_links_the_example_schools(container, schools, roster):
    rep = container.roster.import_path(roster, actor="test")
    assert rep["schools_linked"] == ["gs-lindenhof", "gy-schiller"] and rep["schools_created"] == []
    counts = {k: rep[k]["counts"]["added"] for k in ("locations", "pupils", "teachers", "courses", "classes",
                                                      "memberships")}
    assert counts == {"locations": 2, "pupils": 16, "teachers": 6, "courses": 4, "classes": 6, "memberships": 28}
    classes = container.roster.classes("gy-schiller")
    assert [c["name"] for c in classes] == ["Deutsch 10b", "Mathematik 10b", "Physik Q1"]
    physik = classes[2]
    assert [t["name"] for t in physik["teachers"]] == ["Thi Lan Nguyen", "Michael Krause"]  # instructor order
    assert [p["name"] for p in physik["pupils"]] == ["Lea Dietrich", "Finn Otto", "Lukas Weber"]
    assert {c["name"] for c in container.roster.classes("gs-lindenhof")} == {"Klasse 1a", "Klasse 2b", "Klasse 4a"}
    # pupils are found by any word of the name (case-insensitively, umlauts too), number or user name
    for q in ("köhler", "KÖHLER mia", "LH-24-001", "mia.koehler", "S-100001"):
        assert [p["person_id"] for p in container.roster.pupils(q)["items"]] == ["S-100001"], q
    audit = container.audit.list(action="roster:import")["items"][0]
    assert audit["actor"] == "test" and audit["details"]["pupils"]["added"] == 16
    # the same files again change nothing
    again = container.roster.import_path(roster, actor="test")
    assert all(again[k]["counts"]["added"] == again[k]["counts"]["changed"] == again[k]["counts"]["removed"] == 0
               for k in ("locations", "pupils", "teachers", "courses", "classes", "memberships"))
    assert again["pupils"]["counts"]["unchanged"] == 16 and again["classroom_schools"] == []


def test_reimport_changes_only_what_changed(container, schools, roster):
    container.roster.import_path(roster, actor="test")
    with container.sessions() as s:
        groups = {c.class_id: c.group_id for c in s.query(RosterClass)}
    # a new pupil in Physik Q1, a pupil renamed, one who left 2b, a class renamed
    append(roster / "students.csv", "S-200008,SG-14-204,Emma,,Vogel,Q1,"
                                    "emma.vogel@schueler.schiller.schulen.musterstadt.de,emma.vogel,8,gy-schiller")
    append(roster / "rosters.csv", "R-0021,C-SG-PHQ1,S-200008")
    edit(roster / "students.csv", "Hannah,,Lange,", "Hannah,,Lange-Berg,")
    edit(roster / "students.csv", "S-100006,LH-23-013,Jonas,,Zimmermann,2,,jonas.zimmermann,4,gs-lindenhof\n", "")
    edit(roster / "rosters.csv", "R-0006,C-LH-2B,S-100006\n", "")
    edit(roster / "classes.csv", "Klasse 4a", "Klasse 4a (Abschluss)")
    rep = container.roster.import_path(roster, actor="test")
    assert rep["pupils"]["added"] == ["S-200008"] and rep["pupils"]["changed"] == ["S-200002"]
    assert rep["pupils"]["removed"] == ["S-100006"] and rep["pupils"]["counts"]["unchanged"] == 14
    assert rep["memberships"]["added"] == ["C-SG-PHQ1/pupil/S-200008"]
    assert rep["memberships"]["removed"] == ["C-LH-2B/pupil/S-100006"] and rep["memberships"]["changed"] == []
    assert rep["classes"]["changed"] == ["C-LH-4A"] and rep["classes"]["counts"]["unchanged"] == 5
    for kind in ("locations", "teachers", "courses"):
        assert rep[kind]["counts"]["added"] == rep[kind]["counts"]["changed"] == rep[kind]["counts"]["removed"] == 0
    with container.sessions() as s:
        assert {c.class_id: c.group_id for c in s.query(RosterClass)} == groups  # Classroom group ids are stable
    physik = next(c for c in container.roster.classes("gy-schiller") if c["name"] == "Physik Q1")
    assert "Emma Vogel" in [p["name"] for p in physik["pupils"]]


def test_a_bad_row_refuses_the_whole_roster_naming_file_row_and_column(container, schools, roster):
    container.roster.import_path(roster, actor="test")
    before = snapshot(container.engine)
    edit(roster / "students.csv", "Hannah,,Lange,", "Hannah,,Lange-Berg,")  # a valid change: not applied either
    edit(roster / "students.csv", "lina.hartmann,4,", "lina.hartmann,5,")  # row 6 (header is row 1)
    append(roster / "rosters.csv", "R-0099,C-SG-PHQ1,S-999999")  # row 22: no such pupil
    edit(roster / "classes.csv", "C-LH-2B,2b,K-LH-KL,L-1002", "C-LH-2B,2b,K-LH-KL,L-9999")  # row 3
    with pytest.raises(RosterError) as e:
        container.roster.import_path(roster, actor="test")
    got = [(p.file, p.row, p.column) for p in e.value.problems]
    assert got == [("students.csv", 6, "password_policy"), ("classes.csv", 3, "instructor_id"),
                   ("rosters.csv", 22, "student_id")]
    assert str(e.value.problems[0]) == "students.csv row 6, column password_policy: '5' must be 4, 6, 8 or empty"
    assert e.value.status_code == 422 and e.value.details["count"] == 3
    assert snapshot(container.engine) == before  # nothing changed, not even the valid row


def test_header_and_missing_files_are_named(container, schools, roster, tmp_path):
    edit(roster / "courses.csv", "course_name", "kursname")
    (roster / "rosters.csv").unlink()
    with pytest.raises(RosterError) as e:
        container.roster.import_path(roster, actor="test")
    got = {(p.file, p.row, p.column, p.message) for p in e.value.problems}
    assert ("rosters.csv", None, None, "file is missing from the upload") in got
    assert ("courses.csv", 1, "kursname", "unknown column") in got
    assert ("courses.csv", 1, "course_name", "column is missing from the header") in got
    with pytest.raises(RosterError, match="not a zip file"):
        container.roster.import_path(roster / "staff.csv", actor="test")


def test_zip_and_folder_import_the_same(container, schools, roster, tmp_path):
    rep = container.roster.import_path(zipped(roster, tmp_path / "asm.zip", subdir="export/"), actor="test")
    assert rep["pupils"]["counts"]["added"] == 16 and rep["memberships"]["counts"]["added"] == 28
    again = container.roster.import_path(roster, actor="test")  # the folder: the same roster, nothing changes
    assert again["classroom_schools"] == [] and again["memberships"]["counts"]["unchanged"] == 28
    # semicolons and a byte order mark (as spreadsheet exports write them) are fine too
    f = roster / "locations.csv"
    f.write_bytes(b"\xef\xbb\xbf" + f.read_text(encoding="utf-8").replace(",", ";").encode())
    assert container.roster.import_path(roster, actor="test")["locations"]["counts"]["unchanged"] == 2


def test_unknown_locations_become_schools_with_a_slug_id(container, schools, roster):
    append(roster / "locations.csv", "7BF83DE0-9D69-4662-A1E9-DAAD468DEF09,Grundschule Am Mühlenweg")
    append(roster / "staff.csv", "L-3001,3001,Jürgen,,Weiß,,j.weiss,7BF83DE0-9D69-4662-A1E9-DAAD468DEF09")
    rep = container.roster.import_path(roster, actor="test")
    assert rep["schools_created"] == ["grundschule-am-muehlenweg"]
    assert "created school 'grundschule-am-muehlenweg'" in rep["warnings"][0]
    with container.sessions() as s:
        assert s.get(School, "grundschule-am-muehlenweg").name == "Grundschule Am Mühlenweg"
        assert s.get(AsmLocation, "7BF83DE0-9D69-4662-A1E9-DAAD468DEF09").school_id == "grundschule-am-muehlenweg"
    # the mapping is kept on the next import (the school is not created twice)
    assert container.roster.import_path(roster, actor="test")["schools_created"] == []
    assert school_slug("Städtisches Gymnasium „An der Ruhr“ – Oberstufe") == "staedtisches-gymnasium-an-der-ruhr-obers"
    mapping, created = map_locations({"X1": {"name": "GS Nord"}, "X2": {"name": "GS Nord"}}, {}, {"gs-nord"})
    assert mapping == {"X1": "gs-nord-2", "X2": "gs-nord-3"} and set(created) == {"gs-nord-2", "gs-nord-3"}


def test_classroom_profile_follows_the_roster(container, roster):
    container.blueprints.import_dir(CITY, actor="test")
    ident = "de.musterstadt.schulen.{}.{}.classroom"
    v1 = {(sid, role): latest(container, ident.format(sid, role)) for sid in ("gs-lindenhof", "gy-schiller")
          for role in ("pupil", "teacher")}
    assert all(p.version == 1 for p in v1.values())
    nordstadt = latest(container, ident.format("ges-nordstadt", "teacher"))

    rep = container.roster.import_path(roster, actor="test")
    assert sorted((p["school"], p["role"], p["version"]) for p in rep["classroom_profiles"]) == [
        ("gs-lindenhof", "pupil", 2), ("gs-lindenhof", "teacher", 2),
        ("gy-schiller", "pupil", 2), ("gy-schiller", "teacher", 2)]
    teacher = plist.loads(latest(container, ident.format("gy-schiller", "teacher")).plist)
    edu = next(p for p in teacher["PayloadContent"] if p["PayloadType"] == "com.apple.education")
    assert [g["Name"] for g in edu["Groups"]] == ["Deutsch 10b", "Mathematik 10b", "Physik Q1"]
    physik = edu["Groups"][2]
    assert physik["LeaderIdentifiers"][:2] == ["L-2002", "L-2001"]
    assert physik["MemberIdentifiers"] == ["S-200005", "S-200006", "S-200007"]
    assert {"Identifier": "S-200005", "Name": "Lea Dietrich"} in edu["Users"]
    assert latest(container, ident.format("ges-nordstadt", "teacher")).id == nordstadt.id  # no roster: untouched
    assert [c.name for c in container.blueprints.blueprint("gy-schiller")[1].classroom.classes][0] == "Deutsch 10b"

    # a changed roster: a new version only for the school whose classes changed
    append(roster / "students.csv", "S-200008,SG-14-204,Emma,,Vogel,Q1,,emma.vogel,8,gy-schiller")
    append(roster / "rosters.csv", "R-0021,C-SG-PHQ1,S-200008")
    rep = container.roster.import_path(roster, actor="test")
    assert rep["classroom_schools"] == ["gy-schiller"]
    assert sorted((p["school"], p["role"], p["version"]) for p in rep["classroom_profiles"]) == [
        ("gy-schiller", "pupil", 3), ("gy-schiller", "teacher", 3)]
    assert latest(container, ident.format("gs-lindenhof", "pupil")).version == 2

    # re-importing the blueprints keeps the roster's classes (no Classroom version moves)
    again = container.blueprints.import_dir(CITY, actor="test")
    assert [p for p in again.profiles_changed if p["name"] == "classroom"] == []

    # without roster classes a school falls back to its blueprint's classes
    for name in ("classes.csv", "rosters.csv"):
        lines = (roster / name).read_text().splitlines()
        (roster / name).write_text("\n".join(x for x in lines if "C-SG-" not in x) + "\n")
    rep = container.roster.import_path(roster, actor="test")
    assert rep["classroom_schools"] == ["gy-schiller"]
    back = latest(container, ident.format("gy-schiller", "pupil"))
    assert back.version == 4 and back.content_hash == v1[("gy-schiller", "pupil")].content_hash


def test_cli_roster_import(container, settings, roster, schools, monkeypatch):
    monkeypatch.setenv("SCHOOLMDM_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("SCHOOLMDM_DATABASE_URL", settings.database_url)
    get_settings.cache_clear()
    from app.cli.main import app

    try:
        r = CliRunner().invoke(app, ["roster", "import", str(roster), "--json"])
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["pupils"]["counts"]["added"] == 16
        r = CliRunner().invoke(app, ["roster", "import", str(roster)])
        assert r.exit_code == 0 and "pupils" in r.stdout
        edit(roster / "staff.csv", "thilan.nguyen@schiller", "thilan.nguyen-at-schiller")
        r = CliRunner().invoke(app, ["roster", "import", str(roster)])
        assert r.exit_code == 2
        assert "staff.csv row 6, column email_address" in " ".join(r.stderr.split())
        assert "nothing was imported" in r.stderr
    finally:
        get_settings.cache_clear()
