"""Blueprints: loading, inheritance, error reporting, deterministic ids and hashes."""

from __future__ import annotations

import shutil
import textwrap
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdm.errors import ValidationFailed
from mdm.pki import create_ca, new_key
from profiles.blueprint import BlueprintError, check, load_city
from profiles.blueprint.merge import merge
from profiles.blueprint.source import parse
from profiles.issuer import CAIssuer
from profiles.profile import build_school

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "city"


@pytest.fixture(scope="module")
def city():
    return load_city(EXAMPLES)


@pytest.fixture(scope="module")
def ca():
    return create_ca("Test Classroom CA", "Test City")


@pytest.fixture(scope="module")
def shared_key():
    return new_key()


@pytest.fixture
def issuer(ca, shared_key):
    return CAIssuer(ca, key=shared_key)


@pytest.fixture
def tmp_city(tmp_path):
    d = tmp_path / "city"
    shutil.copytree(EXAMPLES, d)
    return d


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def write_school(city_dir: Path, school_id: str, body: str) -> Path:
    path = city_dir / "schools" / f"{school_id}.yaml"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def only_problem(city_dir: Path):
    with pytest.raises(BlueprintError) as e:
        load_city(city_dir)
    assert len(e.value.problems) == 1, e.value.problems
    return e.value.problems[0]


def line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


# --- loading and inheritance -------------------------------------------------------------------


def test_example_city_loads(city):
    assert city.name == "Musterstadt"
    assert sorted(city.schools) == ["ges-nordstadt", "gs-lindenhof", "gy-schiller"]
    assert {s.school.kind for s in city.schools.values()} == {"Grundschule", "Gymnasium", "Gesamtschule"}
    assert all(p.severity == "warning" for p in check(EXAMPLES))


def test_dicts_merge_deeply(city):
    gs = city.school("gs-lindenhof").restrictions.pupil
    assert gs.camera is True and gs.max_app_rating == "4+"  # school
    assert gs.app_installation is False and gs.rating_region == "de"  # city
    assert gs.apple == {"allowDiagnosticSubmissionModification": False}
    ges = city.school("ges-nordstadt").restrictions.pupil
    assert ges.apple == {"allowDiagnosticSubmissionModification": False, "allowSharedStream": False}


def test_lists_replace_and_plus_appends(city):
    assert [n.ssid for n in city.school("gs-lindenhof").wifi] == ["MS-Schulnetz", "GS-Lindenhof"]
    assert [n.ssid for n in city.school("gy-schiller").wifi] == ["SG-Schueler", "SG-Lehrkraefte"]
    gy_deny = city.school("gy-schiller").web_filter.pupil.denied_urls
    assert gy_deny == ["https://www.tiktok.com", "https://www.instagram.com", "https://www.chatgpt.com",
                       "https://chat.openai.com"]
    base_apps = [a.name for a in city.base.apps]
    assert [a.name for a in city.school("gs-lindenhof").apps] == base_apps + ["ANTON", "Book Creator"]
    assert len(city.school("ges-nordstadt").home_screen.pupil.pages) == 2


def test_scalars_override_and_null_removes(city):
    assert city.school("ges-nordstadt").settings.device_name == "GE-Nord-{role}-{serial}"
    assert city.school("gs-lindenhof").settings.device_name == "{school}-{serial}"
    assert city.school("gs-lindenhof").passcode.pupil is None
    assert city.school("gy-schiller").passcode.pupil.min_length == 6
    wf = city.school("gs-lindenhof").web_filter.pupil
    assert wf.permitted_urls == [] and wf.denied_urls == [] and len(wf.bookmarks) == 5


def test_marks_point_at_the_file_that_set_the_value(city):
    school_file = EXAMPLES / "schools" / "gs-lindenhof.yaml"
    m = city.locate("gs-lindenhof", ("restrictions", "pupil", "camera"))
    assert (Path(m.file), m.line) == (school_file, line_of(school_file, "camera: true"))
    m = city.locate("gs-lindenhof", ("restrictions", "pupil", "app_installation"))
    assert (Path(m.file), m.line) == (EXAMPLES / "base.yaml", line_of(EXAMPLES / "base.yaml", "app_installation"))
    m = city.locate("gs-lindenhof", ("wifi", 1, "ssid"))  # appended item: school file
    assert Path(m.file) == school_file and m.line == line_of(school_file, "ssid: GS-Lindenhof")
    m = city.locate("gs-lindenhof", ("wifi", 0, "ssid"))  # inherited item: base
    assert Path(m.file) == EXAMPLES / "base.yaml"


def test_templates_chain(tmp_city):
    (tmp_city / "templates").mkdir()
    (tmp_city / "templates" / "grundschule.yaml").write_text(
        "restrictions:\n  pupil:\n    siri: false\n    max_app_rating: '9+'\n")
    write_school(tmp_city, "gs-sued", """\
        extends: templates/grundschule
        school: {name: Grundschule Süd}
        restrictions:
          pupil: {max_app_rating: '4+'}
        """)
    c = load_city(tmp_city)
    r = c.school("gs-sued").restrictions.pupil
    assert (r.siri, r.max_app_rating, r.app_installation) == (False, "4+", False)
    assert c.school("gs-sued").school.id == "gs-sued"


# --- error reporting -------------------------------------------------------------------------------


def test_unknown_key_names_file_line_key_and_suggests(tmp_city):
    path = tmp_city / "schools" / "gs-lindenhof.yaml"
    edit(path, "    camera: true", "    camra: true")
    p = only_problem(tmp_city)
    assert (Path(p.file), p.line, p.key) == (path, line_of(path, "camra"), "restrictions.pupil.camra")
    assert p.suggestion == "camera" and "unknown key 'camra'" in p.message
    assert f"{path}:{p.line}:" in str(p) and "did you mean 'camera'" in str(p)


def test_unknown_key_inside_a_list_item(tmp_city):
    path = tmp_city / "schools" / "gy-schiller.yaml"
    edit(path, "    password: \"Wallenstein", "    pasword: \"Wallenstein")
    with pytest.raises(BlueprintError) as e:
        load_city(tmp_city)
    keys = {(p.key, p.suggestion) for p in e.value.problems}
    assert ("wifi[0].pasword", "password") in keys
    assert all(Path(p.file) == path for p in e.value.problems)


def test_unknown_key_under_a_bundle_id(tmp_city):
    edit(tmp_city / "base.yaml", "      alerts: banner", "      alrts: banner")
    p = only_problem(tmp_city)
    assert p.key == 'notifications.pupil["de.musterstadt.schulportal"].alrts' and p.suggestion == "alerts"
    assert Path(p.file).name == "base.yaml" and p.line == line_of(tmp_city / "base.yaml", "alrts")


def test_error_in_base_is_reported_once_at_the_base_line(tmp_city):
    edit(tmp_city / "base.yaml", "  timezone: Europe/Berlin", "  timezone: Europe/Berln")
    p = only_problem(tmp_city)
    assert (Path(p.file).name, p.key, p.suggestion) == ("base.yaml", "settings.timezone", "Europe/Berlin")
    assert p.line == line_of(tmp_city / "base.yaml", "Europe/Berln")


def test_wrong_type_and_bad_values(tmp_city):
    path = tmp_city / "schools" / "gy-schiller.yaml"
    edit(path, "    security: WPA3", "    security: WPA4")
    edit(path, "      port: 3128", "      port: \"3128\"")
    with pytest.raises(BlueprintError) as e:
        load_city(tmp_city)
    got = {p.key: p for p in e.value.problems}
    assert got["wifi[0].security"].suggestion in ("WPA2", "WPA3")
    assert got["wifi[0].security"].line == line_of(path, "WPA4")
    assert got["wifi[0].proxy.port"].line == line_of(path, "port:")
    assert isinstance(e.value, ValidationFailed) and e.value.status_code == 422


def test_semantic_errors_name_the_item(tmp_city):
    path = tmp_city / "schools" / "gs-lindenhof.yaml"
    edit(path, '    password: "Sonnenblume-Lindenhof-7"', '    password: "short"')
    p = only_problem(tmp_city)
    assert p.key == "wifi[1]" and "8 to 63" in p.message and Path(p.file) == path


def test_yaml_syntax_error_has_a_line(tmp_city):
    path = write_school(tmp_city, "broken", "school: {name: X\nwifi: [\n")
    p = only_problem(tmp_city)
    assert Path(p.file) == path and p.line is not None and "YAML syntax error" in p.message


def test_duplicate_keys_are_reported(tmp_city):
    path = write_school(tmp_city, "dup", "school: {name: X}\nsettings: {timezone: Europe/Berlin}\nsettings: {}\n")
    p = only_problem(tmp_city)
    assert (Path(p.file), p.line, p.key) == (path, 3, "settings") and "first set on line 2" in p.message


def test_append_to_non_list_and_append_in_base(tmp_city):
    path = write_school(tmp_city, "bad-append", "school: {name: X}\nsettings+: [1]\n")
    p = only_problem(tmp_city)
    assert (Path(p.file), p.line, p.key) == (path, 2, "settings+")
    path.unlink()
    edit(tmp_city / "base.yaml", "\napps:\n", "\napps+:\n")
    p = only_problem(tmp_city)
    assert Path(p.file).name == "base.yaml" and p.key == "apps+"


def test_school_id_must_match_file_name(tmp_city):
    path = tmp_city / "schools" / "gs-lindenhof.yaml"
    edit(path, "  id: gs-lindenhof", "  id: gs-lindenhov")
    p = only_problem(tmp_city)
    assert (p.key, p.suggestion, p.line) == ("school.id", "gs-lindenhof", line_of(path, "id: gs-lindenhov"))


def test_extends_unknown_and_circular(tmp_city):
    path = tmp_city / "schools" / "gs-lindenhof.yaml"
    edit(path, "extends: base", "extends: bsae")
    p = only_problem(tmp_city)
    assert (p.key, p.suggestion, p.line) == ("extends", "base", 3)
    edit(path, "extends: bsae", "extends: schools/gy-schiller")
    edit(tmp_city / "schools" / "gy-schiller.yaml", "extends: base", "extends: schools/gs-lindenhof")
    with pytest.raises(BlueprintError) as e:
        load_city(tmp_city)
    assert any("circular" in p.message for p in e.value.problems)


def test_unknown_school_and_role(city):
    with pytest.raises(BlueprintError) as e:
        city.school("gs-lindenhov")
    assert e.value.problems[0].suggestion == "gs-lindenhof"
    with pytest.raises(BlueprintError) as e:
        build_school(city, "gs-lindenhof", "pupils")
    assert e.value.problems[0].suggestion == "pupil"


def test_device_name_placeholder_is_checked(tmp_city):
    edit(tmp_city / "base.yaml", '"{school}-{serial}"', '"{schol}-{serial}"')
    p = only_problem(tmp_city)
    assert p.key == "settings.device_name" and p.suggestion == "{school}"


def test_check_reports_errors_and_schema_warnings(tmp_city):
    path = tmp_city / "schools" / "ges-nordstadt.yaml"
    edit(path, "      allowSharedStream: false", "      allowSharedStream: false\n      allowFooBar: true")
    warnings = [p for p in check(tmp_city) if p.severity == "warning"]
    foo = next(p for p in warnings if "allowFooBar" in p.message)
    assert (Path(foo.file), foo.line, foo.key) == (path, line_of(path, "allowFooBar"),
                                                   "restrictions.pupil.apple.allowFooBar")
    later = next(p for p in warnings if "allowGenmoji" in p.message)
    assert later.key == "restrictions.pupil.genmoji" and "iOS 18.0" in later.message
    edit(path, "    camera: false", "    camera: nein")
    problems = check(tmp_city)
    assert problems[0].severity == "error" and problems[0].key == "restrictions.pupil.camera"


def test_check_sanity_warnings(tmp_city):
    edit(tmp_city / "base.yaml", "    auto_lock_minutes: 5", "    auto_lock_minutes: 5\n    max_failed_attempts: 6")
    edit(tmp_city / "base.yaml", "com.apple.DocumentsApp]", "com.apple.DocumentsApp, com.example.notinstalled]")
    msgs = [p.message for p in check(tmp_city) if p.severity == "warning"]
    assert any("erases the iPad after 6" in m for m in msgs)
    assert any("com.example.notinstalled is not among the pupil apps" in m for m in msgs)


# --- determinism -------------------------------------------------------------------------------------


def _summary(build):
    return [(p.name, p.identifier, p.uuid, p.content_hash) for p in build.profiles]


def test_identifiers_and_hashes_are_deterministic(city, ca, shared_key):
    a = build_school(city, "gy-schiller", "pupil", issuer=CAIssuer(ca, key=shared_key, cache=False))
    b = build_school(load_city(EXAMPLES), "gy-schiller", "pupil", issuer=CAIssuer(ca, cache=False))
    assert _summary(a) == _summary(b)
    for pa, pb in zip(a.profiles, b.profiles):
        if pa.name != "classroom":  # no freshly issued key material: byte-identical
            assert pa.plist == pb.plist
    assert a.profile("classroom").plist != b.profile("classroom").plist  # new identity...
    assert a.exam.content_hash == b.exam.content_hash  # ...but the same content hash
    p = a.profile("wifi")
    assert p.identifier == "de.musterstadt.schulen.gy-schiller.pupil.wifi"
    assert uuid.UUID(p.uuid).version == 5 and p.uuid == p.uuid.upper()


def test_uuids_are_unique_across_the_city(city, issuer):
    seen: set[str] = set()
    for school in city.schools:
        for role in ("pupil", "teacher"):
            for p in build_school(city, school, role, issuer=issuer).profiles:
                ids = [p.uuid] + [item["PayloadUUID"] for item in p.payload["PayloadContent"]]
                assert not seen & set(ids)
                seen |= set(ids)


def test_plist_bytes_are_canonical(city, issuer):
    import plistlib

    for p in build_school(city, "gs-lindenhof", "pupil", issuer=issuer).profiles:
        assert plistlib.dumps(plistlib.loads(p.plist), sort_keys=True) == p.plist
        assert plistlib.loads(p.plist) == p.payload


def _hashes(city_dir: Path, issuer) -> dict:
    c = load_city(city_dir)
    return {(s, r, p.name): p.content_hash for s in c.schools for r in ("pupil", "teacher")
            for p in build_school(c, s, r, issuer=issuer).profiles}


def test_one_key_change_changes_exactly_one_profile(tmp_city, issuer):
    before = _hashes(tmp_city, issuer)
    edit(tmp_city / "schools" / "gs-lindenhof.yaml", "    camera: true", "    camera: false")
    after = _hashes(tmp_city, issuer)
    assert before.keys() == after.keys()
    assert [k for k in before if before[k] != after[k]] == [("gs-lindenhof", "pupil", "restrictions")]


def test_city_wide_change_touches_one_concern_everywhere(tmp_city, issuer):
    before = _hashes(tmp_city, issuer)
    edit(tmp_city / "base.yaml", "      - https://www.instagram.com", "      - https://www.snapchat.com")
    after = _hashes(tmp_city, issuer)
    changed = sorted(k for k in before if before[k] != after[k])
    assert changed == [("ges-nordstadt", "pupil", "webfilter"), ("gy-schiller", "pupil", "webfilter")]


def test_new_identities_do_not_change_hashes_but_a_new_ca_does(city, ca, shared_key):
    one = build_school(city, "ges-nordstadt", "teacher", issuer=CAIssuer(ca, cache=False, key=shared_key))
    two = build_school(city, "ges-nordstadt", "teacher", issuer=CAIssuer(ca, cache=False, key=new_key()))
    assert _summary(one) == _summary(two)
    other = CAIssuer(create_ca("Another CA", "Test City"), key=shared_key)
    three = build_school(city, "ges-nordstadt", "pupil", issuer=other)
    four = build_school(city, "ges-nordstadt", "pupil", issuer=CAIssuer(ca, key=shared_key))
    assert three.profile("classroom").content_hash != four.profile("classroom").content_hash
    assert three.profile("restrictions").content_hash == four.profile("restrictions").content_hash


def test_without_issuer_identity_profiles_are_skipped(city):
    b = build_school(city, "ges-nordstadt", "teacher")
    assert set(b.skipped) == {"wifi", "classroom"}
    assert "restrictions" in b.names and "wifi" not in b.names
    assert set(build_school(city, "gy-schiller", "teacher").skipped) == {"classroom"}


def test_build_extras(city, issuer):
    b = build_school(city, "gy-schiller", "pupil", issuer=issuer)
    assert b.locale == {"language": "de", "region": "DE"}
    assert b.exam is not None and "exam" not in b.names
    assert b.profile("exam") is b.exam
    assert build_school(city, "gy-schiller", "teacher", issuer=issuer).exam is None
    removal = [c for c in b.commands if c["RequestType"] == "RemoveApplication"]
    assert removal == [{"RequestType": "RemoveApplication", "Identifier": "com.morriscooke.explaineverything"}]
    tz = {"Item": "TimeZone", "TimeZone": "Europe/Berlin"}
    assert b.commands[-1] == {"RequestType": "Settings", "Settings": [tz]}
    pupil = b.profile("restrictions").payload
    teacher = build_school(city, "gy-schiller", "teacher", issuer=issuer).profile("restrictions").payload
    assert pupil["PayloadRemovalDisallowed"] is True and "PayloadRemovalDisallowed" not in teacher


def test_personal_classroom_profile(city, issuer):
    generic = build_school(city, "gy-schiller", "pupil", issuer=issuer).profile("classroom")
    mine = build_school(city, "gy-schiller", "pupil", issuer=issuer, user="sg-q1-02").profile("classroom")
    assert (mine.identifier, mine.uuid) == (generic.identifier, generic.uuid)
    assert mine.content_hash != generic.content_hash
    edu = mine.payload["PayloadContent"][-1]
    assert edu["UserIdentifier"] == "sg-q1-02" and [g["Name"] for g in edu["Groups"]] == ["Physik Q1"]
    with pytest.raises(BlueprintError):
        build_school(city, "gy-schiller", "pupil", issuer=issuer, user="nobody")


# --- merge properties --------------------------------------------------------------------------------

keys = st.sampled_from(["a", "b", "c", "d"])
scalars = st.one_of(st.integers(), st.text(max_size=3), st.booleans())
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                        st.dictionaries(keys, inner, max_size=3)), max_leaves=8)
docs = st.dictionaries(keys, values, max_size=4)


def _doc(data: dict, name: str):
    import yaml

    return parse(yaml.safe_dump(data), name)


@settings(max_examples=150, deadline=None)
@given(parent=docs, child=docs)
def test_merge_rules(parent, child):
    merged = merge(_doc(parent, "p.yaml"), _doc(child, "c.yaml")).data
    for k, v in parent.items():
        if k not in child:
            assert merged[k] == v  # untouched keys survive
    for k, v in child.items():
        if isinstance(v, dict) and isinstance(parent.get(k), dict):
            assert set(merged[k]) == set(parent[k]) | set(v)  # mappings merge
        else:
            assert merged[k] == v  # lists and scalars replace


@settings(max_examples=100, deadline=None)
@given(parent=st.lists(scalars, max_size=4), extra=st.lists(scalars, max_size=4))
def test_plus_appends(parent, extra):
    merged = merge(_doc({"x": {"l": parent}}, "p.yaml"), _doc({"x": {"l+": extra}}, "c.yaml"))
    assert merged.data == {"x": {"l": parent + extra}}
    if extra:
        assert merged.marks.lookup(("x", "l", len(parent))).file == "c.yaml"
