"""Reading and checking an Apple School Manager SFTP upload before anything is stored.

The upload is six CSV files (a zip of them, or a folder): ``locations.csv``,
``students.csv``, ``staff.csv``, ``courses.csv``, ``classes.csv`` and
``rosters.csv``, UTF-8, comma- or semicolon-separated, header first. Every
problem names the file, the row (1-based, the header is row 1) and the column;
``parse`` raises ``RosterError`` with all of them, or returns a ``Roster``.
"""

from __future__ import annotations

import csv
import functools
import io
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from mdm.errors import ValidationFailed

MAX_FILE_BYTES = 256 * 1024 * 1024
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class Spec:
    columns: tuple[str, ...]
    required: tuple[str, ...]
    key: str | None
    repeat: tuple[str, int, int] | None = None  # (prefix, first, last): location_id_2..999, instructor_id_4..15


SPECS: dict[str, Spec] = {
    "locations.csv": Spec(("location_id", "location_name"), ("location_id", "location_name"), "location_id"),
    "students.csv": Spec(("person_id", "person_number", "first_name", "middle_name", "last_name", "grade_level",
                          "email_address", "sis_username", "password_policy", "location_id"),
                         ("person_id", "first_name", "last_name", "location_id"), "person_id",
                         ("location_id_", 2, 999)),
    "staff.csv": Spec(("person_id", "person_number", "first_name", "middle_name", "last_name", "email_address",
                       "sis_username", "location_id"),
                      ("person_id", "first_name", "last_name", "location_id"), "person_id", ("location_id_", 2, 999)),
    "courses.csv": Spec(("course_id", "course_number", "course_name", "location_id"),
                        ("course_id", "location_id"), "course_id"),
    "classes.csv": Spec(("class_id", "class_number", "course_id", "instructor_id", "instructor_id_2",
                         "instructor_id_3", "location_id", "class_display_name"),
                        ("class_id", "course_id", "location_id"), "class_id", ("instructor_id_", 4, 15)),
    "rosters.csv": Spec(("roster_id", "class_id", "student_id"), ("roster_id", "class_id", "student_id"), "roster_id"),
}
OPTIONAL_COLUMNS = {"class_display_name"}  # may be left out of the header
LIMITS = {"person_number": 64, "first_name": 100, "middle_name": 100, "last_name": 100, "grade_level": 32,
          "email_address": 255, "sis_username": 128, "location_name": 200, "course_number": 64,
          "course_name": 200, "class_number": 64, "class_display_name": 200}
ID_LIMIT = 128


@dataclass(frozen=True)
class Problem:
    file: str
    row: int | None
    column: str | None
    message: str

    def __str__(self) -> str:
        where = self.file + (f" row {self.row}" if self.row else "")
        where += f", column {self.column}" if self.column else ""
        return f"{where}: {self.message}"

    def as_dict(self) -> dict:
        return {"file": self.file, "row": self.row, "column": self.column, "message": self.message}


class RosterError(ValidationFailed):
    code = "roster_invalid"

    def __init__(self, problems: list[Problem]) -> None:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"roster refused, nothing was imported: {problems[0]}{more}",
                         details={"problems": [p.as_dict() for p in problems[:500]], "count": len(problems)})
        self.problems = problems


@dataclass
class Roster:
    """The checked upload: rows keyed by their ASM ids, values stripped, blanks as None."""

    locations: dict[str, dict] = field(default_factory=dict)
    pupils: dict[str, dict] = field(default_factory=dict)
    teachers: dict[str, dict] = field(default_factory=dict)
    courses: dict[str, dict] = field(default_factory=dict)
    classes: dict[str, dict] = field(default_factory=dict)
    members: dict[tuple[str, str, str], dict] = field(default_factory=dict)  # (class_id, role, person_id)


def read_upload(path: Path | str) -> dict[str, bytes]:
    """The six files of a zip or a folder, by lower-case name (other files are ignored)."""
    path = Path(path)
    out: dict[str, bytes] = {}
    if path.is_dir():
        for p in sorted(path.iterdir()):
            if p.is_file() and p.name.lower() in SPECS:
                if p.stat().st_size > MAX_FILE_BYTES:
                    raise RosterError([Problem(p.name, None, None, "file is too large")])
                out[p.name.lower()] = p.read_bytes()
        return out
    if not path.is_file():
        raise RosterError([Problem(str(path), None, None, "no such zip file or folder")])
    return read_zip(path.read_bytes(), path.name)


def read_zip(data: bytes, label: str = "upload.zip") -> dict[str, bytes]:
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise RosterError([Problem(label, None, None, "not a zip file")]) from None
    out: dict[str, bytes] = {}
    with z:
        for info in z.infolist():
            name = PurePosixPath(info.filename)
            if info.is_dir() or "__MACOSX" in name.parts or name.name.startswith(".") \
                    or name.name.lower() not in SPECS:
                continue
            key = name.name.lower()
            if key in out:
                raise RosterError([Problem(label, None, None, f"{key} is in the zip twice")])
            if info.file_size > MAX_FILE_BYTES:
                raise RosterError([Problem(key, None, None, "file is too large")])
            with z.open(info) as f:
                out[key] = f.read(MAX_FILE_BYTES + 1)
    return out


def _rows(name: str, data: bytes, problems: list[Problem]) -> list[tuple[int, dict]] | None:
    """The data rows as (row, {column: value}); None when the file cannot be read at all."""
    spec = SPECS[name]
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        problems.append(Problem(name, data[:e.start].count(b"\n") + 1, None, "is not UTF-8 text"))
        return None
    first = text.split("\n", 1)[0]
    delimiter = ";" if ";" in first and "," not in first else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = [h.strip().lower() for h in next(reader, [])]
    if not any(header):
        problems.append(Problem(name, 1, None, "the header row is missing"))
        return None
    allowed = set(spec.columns)
    if spec.repeat:
        prefix, lo, hi = spec.repeat
        allowed |= {f"{prefix}{i}" for i in range(lo, hi + 1)}
    bad = False
    for i, h in enumerate(header):
        if h not in allowed:
            problems.append(Problem(name, 1, h or f"#{i + 1}", "unknown column"))
            bad = True
        elif header.index(h) != i:
            problems.append(Problem(name, 1, h, "column is named twice"))
            bad = True
    for col in spec.columns:
        if col not in header and col not in OPTIONAL_COLUMNS:
            problems.append(Problem(name, 1, col, "column is missing from the header"))
            bad = True
    if bad:
        return None
    out = []
    width, limits = len(header), [LIMITS.get(h, ID_LIMIT) for h in header]
    required = [i for i, h in enumerate(header) if h in spec.required]
    for cells in reader:
        row = reader.line_num
        values = [c.strip() or None for c in cells]
        if not any(values):
            continue
        if len(values) != width:
            problems.append(Problem(name, row, None, f"has {len(values)} fields, the header has {width}"))
            continue
        for i in required:
            if values[i] is None:
                problems.append(Problem(name, row, header[i], "is required"))
        for i, v in enumerate(values):
            if v is not None and len(v) > limits[i]:
                problems.append(Problem(name, row, header[i], f"is longer than {limits[i]} characters"))
        out.append((row, dict(zip(header, values))))
    return out


def _unique(name: str, rows: list[tuple[int, dict]], col: str, problems: list[Problem]) -> dict[str, tuple[int, dict]]:
    seen: dict[str, tuple[int, dict]] = {}
    for row, rec in rows:
        key = rec.get(col)
        if key is None:
            continue
        if key in seen:
            problems.append(Problem(name, row, col, f"{key!r} is already in row {seen[key][0]}"))
        else:
            seen[key] = (row, rec)
    return seen


@functools.cache
def _repeat_columns(columns: tuple[str, ...], first: str, prefix: str) -> tuple[str, ...]:
    """``first`` and its numbered repeats (location_id_2, ...) among ``columns``, in number order."""
    return (first, *sorted((c for c in columns if c.startswith(prefix) and c[len(prefix):].isdigit()),
                           key=lambda c: int(c[len(prefix):])))


def _repeats(rec: dict, first: str, prefix: str) -> list[tuple[str, str]]:
    return [(c, rec[c]) for c in _repeat_columns(tuple(rec), first, prefix) if rec.get(c)]


def parse(files: dict[str, bytes]) -> Roster:
    """Check every file, row and reference; raise ``RosterError`` listing every problem."""
    problems = [Problem(n, None, None, "file is missing from the upload") for n in SPECS if n not in files]
    rows = {n: _rows(n, files[n], problems) for n in SPECS if n in files}
    if problems:  # a file missing or unreadable: checking references against it would only add noise
        raise RosterError(problems)
    keyed = {n: _unique(n, rows[n], SPECS[n].key, problems) for n in SPECS}
    locations = keyed["locations.csv"]

    def ref(name: str, row: int, col: str, value: str | None, known: dict, what: str) -> None:
        if value is not None and value not in known:
            problems.append(Problem(name, row, col, f"{value!r} is not a {what}"))

    r = Roster()
    for lid, (row, rec) in locations.items():
        r.locations[lid] = {"location_id": lid, "name": rec["location_name"]}
    for name, kind in (("students.csv", "pupils"), ("staff.csv", "teachers")):
        target = getattr(r, kind)
        for pid, (row, rec) in keyed[name].items():
            locs = _repeats(rec, "location_id", "location_id_")
            for col, lid in locs:
                ref(name, row, col, lid, locations, "location_id in locations.csv")
            email = rec.get("email_address")
            if email and not EMAIL.match(email):
                problems.append(Problem(name, row, "email_address", f"{email!r} is not an email address"))
            doc = {k: rec.get(k) for k in ("person_id", "person_number", "first_name", "middle_name", "last_name",
                                           "sis_username", "location_id")}
            doc["email"] = email
            doc["other_locations"] = ",".join(dict.fromkeys(v for c, v in locs[1:] if v != rec["location_id"])) or None
            if kind == "pupils":
                policy = rec.get("password_policy")
                if policy not in (None, "4", "6", "8"):
                    problems.append(Problem(name, row, "password_policy", f"{policy!r} must be 4, 6, 8 or empty"))
                doc.update(grade_level=rec.get("grade_level"), password_policy=policy)
            target[pid] = doc
    staff = keyed["staff.csv"]
    for pid, (row, _) in staff.items():
        if pid in keyed["students.csv"]:
            problems.append(Problem("staff.csv", row, "person_id", f"{pid!r} is also a pupil "
                                    f"(students.csv row {keyed['students.csv'][pid][0]})"))
    for cid, (row, rec) in keyed["courses.csv"].items():
        ref("courses.csv", row, "location_id", rec["location_id"], locations, "location_id in locations.csv")
        r.courses[cid] = {"course_id": cid, "course_number": rec.get("course_number"),
                          "name": rec.get("course_name"), "location_id": rec["location_id"]}
    for cid, (row, rec) in keyed["classes.csv"].items():
        ref("classes.csv", row, "location_id", rec["location_id"], locations, "location_id in locations.csv")
        ref("classes.csv", row, "course_id", rec["course_id"], keyed["courses.csv"], "course_id in courses.csv")
        r.classes[cid] = {"class_id": cid, "class_number": rec.get("class_number"), "course_id": rec["course_id"],
                          "display_name": rec.get("class_display_name"), "location_id": rec["location_id"]}
        seen: set[str] = set()
        for pos, (col, pid) in enumerate(_repeats(rec, "instructor_id", "instructor_id_"), start=1):
            ref("classes.csv", row, col, pid, staff, "person_id in staff.csv")
            if pid in seen:
                problems.append(Problem("classes.csv", row, col, f"{pid!r} is named twice for this class"))
            seen.add(pid)
            r.members[(cid, "teacher", pid)] = {"roster_id": None, "position": pos}
    pairs: dict[tuple[str, str], int] = {}
    for rid, (row, rec) in keyed["rosters.csv"].items():
        ref("rosters.csv", row, "class_id", rec["class_id"], keyed["classes.csv"], "class_id in classes.csv")
        ref("rosters.csv", row, "student_id", rec["student_id"], keyed["students.csv"], "person_id in students.csv")
        pair = (rec["class_id"], rec["student_id"])
        if pair in pairs:
            problems.append(Problem("rosters.csv", row, "student_id",
                                    f"{pair[1]!r} is already in class {pair[0]!r} (row {pairs[pair]})"))
            continue
        pairs[pair] = row
        r.members[(pair[0], "pupil", pair[1])] = {"roster_id": rid, "position": 0}
    if problems:
        problems.sort(key=lambda p: (list(SPECS).index(p.file) if p.file in SPECS else -1, p.row or 0))
        raise RosterError(problems)
    return r
