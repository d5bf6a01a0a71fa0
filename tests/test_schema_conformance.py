"""Everything built from examples/city conforms to Apple's schema.

Two independent checks: the product's checker over the derived table, and a
small validator in this file that reads Apple's raw YAML directly (so a wrong
derived table cannot hide a wrong payload). The derived table itself is also
compared with the raw YAML.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from functools import cache
from pathlib import Path

import pytest
import yaml

from mdm.pki import create_ca, new_key
from profiles.blueprint.loader import load_city
from profiles.commands import device_name_command
from profiles.issuer import CAIssuer
from profiles.profile import build_school
from profiles.schema.checker import check_command, check_payload, errors, schema

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "city"
APPLE = Path(os.environ.get("APPLE_DM_SCHEMA", "/work/shared/apple-device-management"))
needs_apple = pytest.mark.skipif(not (APPLE / "mdm" / "profiles").is_dir(), reason="Apple schema YAML not present")


@pytest.fixture(scope="module")
def city():
    return load_city(EXAMPLES)


@pytest.fixture(scope="module")
def issuer():
    return CAIssuer(create_ca("Musterstadt Classroom CA", "Stadt Musterstadt"), key=new_key())


@pytest.fixture(scope="module")
def builds(city, issuer):
    return {(s, r): build_school(city, s, r, issuer=issuer) for s in city.schools for r in ("pupil", "teacher")}


def _all_profiles(build):
    return build.profiles + ([build.exam] if build.exam else [])


# --- the product checker: zero errors ------------------------------------------------------------


def test_every_school_and_role_builds_something(builds):
    assert len(builds) == 6
    for (school, role), b in builds.items():
        assert not b.skipped, (school, role, b.skipped)
        assert {"wifi", "restrictions", "classroom"} <= set(b.names)
        assert b.commands


def test_every_profile_passes_the_checker(city, builds):
    for (school, role), b in builds.items():
        s = city.school(school).settings
        for p in _all_profiles(b):
            found = errors(check_payload(p.payload, supervised=s.supervised, ios=s.min_ios))
            assert found == [], f"{school}/{role}/{p.name}: " + "; ".join(map(str, found))


def test_every_command_passes_the_checker(city, builds):
    for (school, role), b in builds.items():
        bp = city.school(school)
        cmds = b.commands + [device_name_command(bp, role, "DMPXK2ABCD")]
        for cmd in cmds:
            found = errors(check_command(cmd, supervised=True, ios=bp.settings.min_ios))
            assert found == [], f"{school}/{role}/{cmd['RequestType']}: " + "; ".join(map(str, found))


def test_envelope_form_is_accepted(builds):
    cmd = builds[("gy-schiller", "pupil")].commands[0]
    assert check_command({"CommandUUID": "X", "Command": cmd}) == []
    assert [i.code for i in check_command({"CommandUUID": "X", "Command": cmd, "Extra": 1})] == ["unknown_key"]


# --- an independent validator over Apple's raw YAML ----------------------------------------------

PY_TYPES = {"<string>": str, "<integer>": int, "<real>": (int, float), "<boolean>": bool,
            "<data>": bytes, "<date>": dt.datetime, "<array>": list, "<dictionary>": dict}


@cache
def _raw(kind: str) -> dict[str, list[dict]]:
    """payload type / RequestType -> raw payloadkeys (variants of a type merged)."""
    out: dict[str, list[dict]] = {}
    for f in sorted((APPLE / "mdm" / kind).glob("*.yaml")):
        doc = yaml.safe_load(f.read_text(encoding="utf-8"))
        name = doc["payload"].get("payloadtype") or doc["payload"].get("requesttype")
        keys = out.setdefault(name, [])
        keys += [k for k in doc.get("payloadkeys") or [] if k["key"] not in {x["key"] for x in keys}]
    return out


def _raw_validate(value, keys: list[dict], path: str, found: list[str]) -> None:
    """Keys exist, types match, enums hold, required keys are present - nothing else."""
    by_name = {k["key"]: k for k in keys}
    for name, item in value.items():
        spec = by_name.get(name) or by_name.get("ANY")
        if spec is None:
            found.append(f"{path}.{name}: not in Apple's schema")
            continue
        _raw_value(item, spec, f"{path}.{name}", found)
    for k in keys:
        if k.get("presence") == "required" and k["key"] != "ANY" and k["key"] not in value:
            found.append(f"{path}.{k['key']}: required")


def _raw_value(item, spec: dict, path: str, found: list[str]) -> None:
    t = PY_TYPES.get(spec.get("type"))
    if t is not None and (not isinstance(item, t) or (t is int and isinstance(item, bool))):
        found.append(f"{path}: {type(item).__name__} is not {spec['type']}")
        return
    if "rangelist" in spec and not isinstance(item, (list, dict)) and item not in spec["rangelist"]:
        found.append(f"{path}: {item!r} not in {spec['rangelist']}")
    subs = spec.get("subkeys") or []
    if isinstance(item, dict) and subs:
        _raw_validate(item, subs, path, found)
    elif isinstance(item, list) and subs:
        for i, element in enumerate(item):
            alts = [s for s in subs if not isinstance(element, dict) or len(subs) == 1
                    or all(element.get(x["key"]) in x["rangelist"] for x in s.get("subkeys") or []
                           if x.get("presence") == "required" and "rangelist" in x)]
            _raw_value(element, alts[0] if alts else subs[0], f"{path}[{i}]", found)


@needs_apple
def test_built_payloads_against_raw_apple_yaml(builds):
    payloads, common, top = _raw("profiles"), _raw("profiles")["CommonPayloadKeys"], _raw("profiles")["TopLevel"]
    for (school, role), b in builds.items():
        for p in _all_profiles(b):
            found: list[str] = []
            profile = {k: v for k, v in p.payload.items() if k != "PayloadContent"}
            _raw_validate(profile, [k for k in top if k["key"] != "PayloadContent"], "Configuration", found)
            for item in p.payload["PayloadContent"]:
                keys = payloads[item["PayloadType"]] + common
                _raw_validate(item, keys, item["PayloadType"], found)
            assert found == [], f"{school}/{role}/{p.name}: {found}"


@needs_apple
def test_built_commands_against_raw_apple_yaml(city, builds):
    commands = _raw("commands")
    for (school, role), b in builds.items():
        for cmd in b.commands + [device_name_command(city.school(school), role, "SERIAL1")]:
            found: list[str] = []
            body = {k: v for k, v in cmd.items() if k != "RequestType"}
            _raw_validate(body, commands[cmd["RequestType"]], cmd["RequestType"], found)
            assert found == [], f"{school}/{role}: {found}"


# --- the derived table matches the raw YAML --------------------------------------------------------

TYPE_CODES = {"<string>": "s", "<integer>": "i", "<real>": "r", "<boolean>": "b", "<data>": "D",
              "<date>": "t", "<array>": "a", "<dictionary>": "d", "<any>": "*"}


def _compare(raw: list[dict], derived, where: str, depth: int = 0) -> None:
    if isinstance(derived, str):
        derived = schema()["defs"][derived]
    assert [k["key"] for k in raw] == [n["k"] for n in derived], where
    if depth > 6:  # recursive structures (home screen folders) repeat from here on
        return
    for k, n in zip(raw, derived):
        at = f"{where}.{k['key']}"
        assert TYPE_CODES[k["type"]] == n["t"], at
        assert (k.get("presence") == "required") == bool(n.get("r")), at
        assert k.get("rangelist") == n.get("e"), at
        ios = (k.get("supportedOS") or {}).get("iOS") or {}
        assert str(ios["introduced"]) == n["ios"]["i"] if "introduced" in ios else "i" not in n.get("ios", {}), at
        assert bool(ios.get("supervised")) == bool(n.get("ios", {}).get("s")), at
        if k.get("subkeys"):
            _compare(k["subkeys"], n["sub"], at, depth + 1)


@needs_apple
def test_derived_table_matches_raw_yaml():
    table = schema()
    for name, keys in _raw("profiles").items():
        derived = {"CommonPayloadKeys": table["common"], "TopLevel": table["toplevel"]}.get(name)
        _compare(keys, derived if derived is not None else table["payloads"][name]["keys"], name)
    for name, keys in _raw("commands").items():
        _compare(keys, table["commands"][name]["keys"], name)
    assert len(table["payloads"]) + 2 >= 120 and len(table["commands"]) == len(_raw("commands"))


@needs_apple
def test_shipped_table_is_what_the_tool_derives():
    import importlib.util

    spec = importlib.util.spec_from_file_location("derive_schema", ROOT / "tools" / "derive_schema.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    shipped = (ROOT / "profiles" / "schema" / "apple_schema.json").read_text(encoding="utf-8")
    assert tool.dumps(tool.derive(APPLE)) == shipped
    assert json.loads(shipped)["source"]["commit"] == "b6202ca2fbd31286a52eb160b67a4db7b4fe1f1f"


def test_table_is_small_and_knows_the_payloads_we_build():
    size = (ROOT / "profiles" / "schema" / "apple_schema.json").stat().st_size
    assert size < 300_000
    for ptype in ("com.apple.wifi.managed", "com.apple.applicationaccess", "com.apple.webcontent-filter",
                  "com.apple.homescreenlayout", "com.apple.notificationsettings", "com.apple.app.lock",
                  "com.apple.education", "com.apple.mobiledevice.passwordpolicy", "com.apple.security.root",
                  "com.apple.security.pkcs1", "com.apple.security.pkcs12"):
        assert ptype in schema()["payloads"]
    for rtype in ("InstallApplication", "RemoveApplication", "Settings"):
        assert rtype in schema()["commands"]


# --- negative cases ----------------------------------------------------------------------------------


def _wifi(**extra):
    return {"PayloadType": "com.apple.wifi.managed", "PayloadVersion": 1, "PayloadIdentifier": "a.b",
            "PayloadUUID": "5B1D8C2E-0000-4000-8000-000000000001", "SSID_STR": "X", **extra}


def _codes(issues):
    return sorted((i.severity, i.code, i.key) for i in issues)


def test_unknown_key_with_suggestion():
    issues = check_payload(_wifi(AutoJion=True), supervised=True)
    assert _codes(issues) == [("error", "unknown_key", "AutoJion")]
    assert "did you mean 'AutoJoin'" in issues[0].message


def test_unknown_nested_key():
    issues = check_payload(_wifi(EAPClientConfiguration={"AcceptEAPTypes": [25], "UserNme": "x"}), supervised=True)
    assert _codes(issues) == [("error", "unknown_key", "EAPClientConfiguration.UserNme")]


def test_wrong_types():
    issues = check_payload(_wifi(AutoJoin="yes", HIDDEN_NETWORK=1), supervised=True)
    assert _codes(issues) == [("error", "wrong_type", "AutoJoin"), ("error", "wrong_type", "HIDDEN_NETWORK")]


def test_bool_is_not_an_integer():
    cmd = {"RequestType": "InstallApplication", "iTunesStoreID": True}
    assert _codes(check_command(cmd)) == [("error", "wrong_type", "iTunesStoreID")]


def test_bad_enum_values():
    assert _codes(check_payload(_wifi(EncryptionType="WPA4"), supervised=True)) == [
        ("error", "bad_value", "EncryptionType")]
    eap = {"AcceptEAPTypes": [99]}
    assert _codes(check_payload(_wifi(EAPClientConfiguration=eap), supervised=True)) == [
        ("error", "bad_value", "EAPClientConfiguration.AcceptEAPTypes[0]")]
    cmd = {"RequestType": "InstallApplication", "iTunesStoreID": 1, "ManagementFlags": 2}
    assert _codes(check_command(cmd)) == [("error", "bad_value", "ManagementFlags")]


def test_range_and_format():
    pw = {"PayloadType": "com.apple.mobiledevice.passwordpolicy", "PayloadVersion": 1,
          "PayloadIdentifier": "a", "PayloadUUID": "U", "maxFailedAttempts": 20}
    assert _codes(check_payload(pw, supervised=True)) == [("error", "bad_value", "maxFailedAttempts")]
    assert _codes(check_payload(_wifi(PayloadCertificateUUID="not-a-uuid"), supervised=True)) == [
        ("error", "bad_value", "PayloadCertificateUUID")]


def test_missing_required():
    edu = {"PayloadType": "com.apple.education", "PayloadVersion": 1, "PayloadIdentifier": "a",
           "PayloadUUID": "U", "OrganizationName": "X", "UserIdentifier": "u", "Users": [], "Groups": [{"Name": "g"}]}
    assert _codes(check_payload(edu, supervised=True)) == [
        ("error", "missing_required", "Groups[0].BeaconID"),
        ("error", "missing_required", "Groups[0].MemberIdentifiers"),
        ("error", "missing_required", "OrganizationUUID")]


def test_supervised_only_key_flagged_on_unsupervised():
    r = {"PayloadType": "com.apple.applicationaccess", "PayloadVersion": 1, "PayloadIdentifier": "a",
         "PayloadUUID": "U", "allowAppInstallation": False, "allowCamera": False}
    assert check_payload(r, supervised=True) == []
    assert _codes(check_payload(r, supervised=False)) == [("warning", "supervised_only", "allowAppInstallation")]


def test_supervised_only_payload_is_an_error_on_unsupervised():
    hs = {"PayloadType": "com.apple.homescreenlayout", "PayloadVersion": 1, "PayloadIdentifier": "a",
          "PayloadUUID": "U", "Pages": []}
    assert _codes(check_payload(hs, supervised=False)) == [("error", "supervised_only", "")]


def test_ios_availability():
    assert _codes(check_payload(_wifi(SetupModes=["System"]), supervised=True)) == [
        ("error", "not_on_ios", "SetupModes")]
    eap = {"AcceptEAPTypes": [25], "TLSAllowTrustExceptions": True}
    assert _codes(check_payload(_wifi(EAPClientConfiguration=eap), supervised=True)) == [
        ("error", "removed", "EAPClientConfiguration.TLSAllowTrustExceptions")]
    wf = {"PayloadType": "com.apple.webcontent-filter", "PayloadVersion": 1, "PayloadIdentifier": "a",
          "PayloadUUID": "U", "BlacklistedURLs": ["https://x"], "HideDenyListURLs": True}
    assert _codes(check_payload(wf, supervised=True, ios="17.0")) == [
        ("warning", "deprecated", "BlacklistedURLs"), ("warning", "introduced_later", "HideDenyListURLs")]
    assert _codes(check_payload(wf, supervised=True, ios="18.1")) == [("warning", "deprecated", "BlacklistedURLs")]


def test_macos_only_payload_type():
    p = {"PayloadType": "com.apple.dock", "PayloadVersion": 1, "PayloadIdentifier": "a", "PayloadUUID": "U"}
    assert _codes(check_payload(p, supervised=True)) == [("error", "not_on_ios", "")]


def test_unknown_types():
    assert _codes(check_payload({"PayloadType": "com.example.nope"}, supervised=True)) == [
        ("error", "unknown_type", "PayloadType")]
    assert _codes(check_command({"RequestType": "MakeCoffee"})) == [("error", "unknown_type", "RequestType")]


def test_settings_items_are_matched_by_item_name():
    ok = {"RequestType": "Settings", "Settings": [{"Item": "TimeZone", "TimeZone": "Europe/Berlin"},
                                                  {"Item": "DeviceName", "DeviceName": "x"}]}
    assert check_command(ok) == []
    assert _codes(check_command(ok, supervised=False)) == [
        ("warning", "supervised_only", "Settings[0]"), ("warning", "supervised_only", "Settings[1]")]
    bad = {"RequestType": "Settings", "Settings": [{"Item": "Language", "Language": "de"},
                                                   {"Item": "TimeZone", "TimeZon": "x"}]}
    assert _codes(check_command(bad)) == [("error", "bad_value", "Settings[0]"),
                                          ("error", "missing_required", "Settings[1].TimeZone"),
                                          ("error", "unknown_key", "Settings[1].TimeZon")]


def test_recursive_home_screen_is_checked_at_depth():
    folder = {"Type": "Folder", "DisplayName": "F", "Pages": [[{"Type": "Ap", "BundleID": "a.b"}]]}
    hs = {"PayloadType": "com.apple.homescreenlayout", "PayloadVersion": 1, "PayloadIdentifier": "a",
          "PayloadUUID": "U", "Pages": [[folder]]}
    assert _codes(check_payload(hs, supervised=True)) == [("error", "bad_value", "Pages[0][0].Pages[0][0].Type")]


def test_encrypted_profile_needs_no_payload_content():
    enc = {"PayloadType": "Configuration", "PayloadVersion": 1, "PayloadIdentifier": "a", "PayloadUUID": "U",
           "IsEncrypted": True, "EncryptedPayloadContent": b"cms"}
    assert check_payload(enc, supervised=True) == []
    plain = {k: v for k, v in enc.items() if k not in ("IsEncrypted", "EncryptedPayloadContent")}
    assert _codes(check_payload(plain, supervised=True)) == [("error", "missing_required", "PayloadContent")]


def test_profile_level_checks():
    profile = {"PayloadType": "Configuration", "PayloadVersion": 2, "PayloadIdentifier": "a", "PayloadUUID": "U",
               "PayloadContent": [_wifi(), _wifi()], "PayloadScope": "Device"}
    assert _codes(check_payload(profile, supervised=True)) == [
        ("error", "bad_value", "PayloadContent[1].PayloadUUID"), ("error", "bad_value", "PayloadScope"),
        ("error", "bad_value", "PayloadVersion")]
