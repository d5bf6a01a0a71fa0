"""Blueprints in the database: versioned import, refusal of bad input, diffs, pushes of what changed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app.db.models import BlueprintVersion, Profile, School
from profiles.blueprint import BlueprintError
from tests.support.fixtures import snapshot

CITY = Path(__file__).resolve().parents[1] / "examples" / "city"


@pytest.fixture
def city(tmp_path):
    d = tmp_path / "city"
    shutil.copytree(CITY, d)
    return d


def count(container, model) -> int:
    with container.sessions() as s:
        return s.query(model).count()


def test_import_creates_schools_blueprints_and_signed_profiles(container, city):
    rep = container.blueprints.import_dir(city, actor="test")
    assert sorted(rep.schools_added) == ["ges-nordstadt", "gs-lindenhof", "gy-schiller"]
    assert count(container, BlueprintVersion) == 3
    n = count(container, Profile)
    assert n == len(rep.profiles_changed) and n >= 3 * 2 * 4
    # importing the same files again changes nothing
    again = container.blueprints.import_dir(city, actor="test")
    assert again.profiles_changed == [] and sorted(again.schools_unchanged) == sorted(rep.schools_added)
    assert count(container, Profile) == n and count(container, BlueprintVersion) == 3


def test_one_key_change_makes_one_new_profile_version(container, city):
    container.blueprints.import_dir(city, actor="test")
    f = city / "schools" / "gs-lindenhof.yaml"
    f.write_text(f.read_text().replace("Sonnenblume-Lindenhof-7", "Sonnenblume-Lindenhof-8"))
    rep = container.blueprints.import_dir(city, actor="test")
    assert rep.schools_changed == ["gs-lindenhof"]
    changed = {(p["role"], p["name"], p["version"]) for p in rep.profiles_changed}
    assert changed == {("pupil", "wifi", 2), ("teacher", "wifi", 2)}
    d = container.blueprints.diff("gs-lindenhof")
    assert d["from"] == 1 and d["to"] == 2
    assert [(c["key"], c["change"]) for c in d["changes"]] == [("wifi.1.password", "changed")]
    assert "Sonnenblume" not in str(d)  # secrets are masked in diffs


def test_malformed_blueprint_names_file_line_key_and_changes_nothing(container, city):
    container.blueprints.import_dir(city, actor="test")
    before = snapshot(container.engine)
    f = city / "schools" / "gy-schiller.yaml"
    lines = f.read_text().splitlines()
    idx = next(i for i, line in enumerate(lines) if line.startswith("restrictions:"))
    lines.insert(idx + 2, "    camra: false")
    f.write_text("\n".join(lines) + "\n")
    (city / "schools" / "gs-lindenhof.yaml").write_text(
        (city / "schools" / "gs-lindenhof.yaml").read_text().replace("Sonnenblume-Lindenhof-7", "changed-password-9"))
    with pytest.raises(BlueprintError) as e:
        container.blueprints.import_dir(city, actor="test")
    p = e.value.problems[0]
    assert p.file.endswith("schools/gy-schiller.yaml") and p.line == idx + 3
    assert "camra" in p.key and p.suggestion == "camera"
    assert snapshot(container.engine) == before  # not even the valid school changed


def test_show_and_versions(container, city):
    container.blueprints.import_dir(city, actor="alice")
    doc = container.blueprints.show("gs-lindenhof")
    assert doc["version"] == 1 and doc["created_by"] == "alice"
    assert doc["blueprint"]["school"]["name"] == "Grundschule Am Lindenhof"
    assert "Sonnenblume-Lindenhof-7" not in str(doc)
    assert container.blueprints.versions("gs-lindenhof")[0]["version"] == 1
    with container.sessions() as s:
        assert s.get(School, "gs-lindenhof").name == "Grundschule Am Lindenhof"
