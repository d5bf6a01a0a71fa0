"""The virtual iPad (simulator.device): command execution, pure, no network."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import os
import stat
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mdm import pki, plist
from mdm.checkin import Authenticate, TokenUpdate, parse_checkin
from mdm.commands import new_command, parse_report
from mdm.enrollment import EnrollmentParams, enrollment_profile
from mdm.errors import ParseError
from profiles.encryption import encrypt_profile
from profiles.signing import sign_profile
from simulator.client import ClientStats, parse_enrollment_profile, pick_ca, subject_name
from simulator.commands import handled_request_types
from simulator.device import NON_IDEMPOTENT, VirtualIPad
from simulator.fleet import Fleet
from simulator.inventory import hardware_for, random_serial
from simulator.keypool import KeyPool, SignatureCache
from simulator.signer import DetachedSigner


@pytest.fixture(scope="module")
def world():
    ca = pki.create_ca("Test Device CA", "Test City Schools")
    signing = pki.issue_signing_identity(ca, "Test City Schools")
    other_ca = pki.create_ca("Other CA", "Elsewhere")
    other_signing = pki.issue_signing_identity(other_ca, "Elsewhere")
    device_key = pki.new_key()
    return {"ca": ca, "signing": signing, "other_signing": other_signing, "device_key": device_key}


@pytest.fixture
def ipad(world):
    return make_ipad(world)


def make_ipad(world, **kw) -> VirtualIPad:
    d = VirtualIPad(hardware_for("SIMTEST" + uuid.uuid4().hex[:6].upper()), **kw)
    cert = pki.issue_identity(world["ca"], d.serial, key=world["device_key"]).cert
    d.enroll(key=world["device_key"], cert=cert, ca_cert=world["ca"].cert, topic="com.apple.mgmt.External.test",
             server_url="https://mdm.test/mdm/connect", checkin_url="https://mdm.test/mdm/checkin",
             profile={"PayloadIdentifier": "org.schoolmdm.enroll.gs", "PayloadUUID": "E", "PayloadVersion": 1,
                      "PayloadType": "Configuration", "PayloadContent": []})
    return d


def profile(ident: str = "org.schoolmdm.wifi", puuid: str | None = None, **extra) -> dict:
    puuid = puuid or str(uuid.uuid4()).upper()
    return {
        "PayloadType": "Configuration", "PayloadVersion": 1, "PayloadIdentifier": ident, "PayloadUUID": puuid,
        "PayloadDisplayName": "Schul-WLAN",
        "PayloadContent": [{"PayloadType": "com.apple.wifi.managed", "PayloadVersion": 1,
                            "PayloadIdentifier": ident + ".wifi", "PayloadUUID": puuid + "-1",
                            "SSID_STR": "Schule", "EncryptionType": "WPA2", "Password": "pw"}],
        **extra,
    }


def signed(p: dict, identity) -> bytes:
    return sign_profile(plist.dumps(p), identity)


def run(d: VirtualIPad, request_type: str, params: dict | None = None, command_uuid: str | None = None) -> dict:
    cmd = new_command(request_type, params, command_uuid=command_uuid)
    report = parse_report(d.handle_command(cmd.to_plist()))
    assert report.udid == d.udid and report.command_uuid == cmd.command_uuid
    return report.plist


# -- profiles ---------------------------------------------------------------------------------
def test_install_profile_is_acknowledged_and_kept_by_identifier(ipad, world):
    p = profile()
    r = run(ipad, "InstallProfile", {"Payload": signed(p, world["signing"])})
    assert r["Status"] == "Acknowledged"
    assert ipad.profiles["org.schoolmdm.wifi"]["PayloadUUID"] == p["PayloadUUID"]
    newer = profile(SSID="x")
    run(ipad, "InstallProfile", {"Payload": signed(newer, world["signing"])})
    assert list(ipad.profiles) == ["org.schoolmdm.wifi"]
    assert ipad.profiles["org.schoolmdm.wifi"]["PayloadUUID"] == newer["PayloadUUID"]
    assert ipad.acknowledged("InstallProfile") == 2


def test_profile_list_reports_installed_profiles(ipad, world):
    p = profile("org.schoolmdm.restrictions")
    run(ipad, "InstallProfile", {"Payload": signed(p, world["signing"])})
    items = run(ipad, "ProfileList")["ProfileList"]
    assert [i["PayloadIdentifier"] for i in items] == ["org.schoolmdm.enroll.gs", "org.schoolmdm.restrictions"]
    mine = items[1]
    assert mine["IsManaged"] is True and mine["PayloadUUID"] == p["PayloadUUID"]
    assert mine["PayloadDisplayName"] == "Schul-WLAN" and mine["PayloadVersion"] == 1
    assert mine["PayloadContent"] == [{"PayloadType": "com.apple.wifi.managed", "PayloadVersion": 1,
                                       "PayloadIdentifier": "org.schoolmdm.restrictions.wifi",
                                       "PayloadUUID": p["PayloadUUID"] + "-1"}]
    managed_only = run(ipad, "ProfileList", {"ManagedOnly": True})["ProfileList"]
    assert [i["PayloadIdentifier"] for i in managed_only] == ["org.schoolmdm.restrictions"]


def test_profile_signed_by_another_ca_is_an_error(ipad, world):
    r = run(ipad, "InstallProfile", {"Payload": signed(profile(), world["other_signing"])})
    assert r["Status"] == "Error"
    (err,) = r["ErrorChain"]
    assert err["ErrorDomain"] == "MCProfileErrorDomain" and err["ErrorCode"] == 1004
    assert err["LocalizedDescription"]
    assert ipad.profiles == {}


def test_tampered_profile_is_an_error(ipad, world):
    der = bytearray(signed(profile(), world["signing"]))
    i = bytes(der).index(b"Schule")
    der[i] ^= 0x20
    r = run(ipad, "InstallProfile", {"Payload": bytes(der)})
    assert r["Status"] == "Error" and r["ErrorChain"][0]["ErrorCode"] == 1004
    assert ipad.profiles == {}


def test_unsigned_profile_needs_the_knob(world):
    strict = make_ipad(world)
    assert run(strict, "InstallProfile", {"Payload": plist.dumps(profile())})["Status"] == "Error"
    lax = make_ipad(world, require_signed_profiles=False)
    assert run(lax, "InstallProfile", {"Payload": plist.dumps(profile())})["Status"] == "Acknowledged"
    assert lax.profile_meta["org.schoolmdm.wifi"]["signed"] is False


def test_invalid_profiles_get_apple_codes(ipad, world):
    cases = [
        ({**profile(), "PayloadVersion": 2}, 1001),
        ({k: v for k, v in profile().items() if k != "PayloadUUID"}, 1002),
        ({**profile(), "PayloadContent": []}, 1005),
        ({**profile(), "PayloadType": "Something"}, 1000),
    ]
    dup = profile()
    dup["PayloadContent"].append(dict(dup["PayloadContent"][0], PayloadIdentifier="other"))
    cases.append((dup, 1007))
    for p, code in cases:
        r = run(ipad, "InstallProfile", {"Payload": signed(p, world["signing"])})
        assert (r["Status"], r["ErrorChain"][0]["ErrorCode"]) == ("Error", code), p
    assert run(ipad, "InstallProfile", {"Payload": "not data"})["Status"] == "CommandFormatError"


def test_encrypted_profile_is_decrypted_with_the_device_identity(ipad, world):
    p = profile("org.schoolmdm.secret")
    enc = encrypt_profile(p, ipad.cert)
    assert "PayloadContent" not in enc
    r = run(ipad, "InstallProfile", {"Payload": signed(enc, world["signing"])})
    assert r["Status"] == "Acknowledged"
    assert ipad.profiles["org.schoolmdm.secret"]["PayloadContent"] == p["PayloadContent"]
    (item,) = run(ipad, "ProfileList", {"ManagedOnly": True})["ProfileList"]
    assert item["IsEncrypted"] is True


def test_encrypted_for_another_device_cannot_be_decrypted(ipad, world):
    other = pki.issue_identity(world["ca"], "other").cert
    r = run(ipad, "InstallProfile", {"Payload": signed(encrypt_profile(profile(), other), world["signing"])})
    assert r["Status"] == "Error" and r["ErrorChain"][0]["ErrorCode"] == 1006


def test_remove_profile(ipad, world):
    run(ipad, "InstallProfile", {"Payload": signed(profile(), world["signing"])})
    assert run(ipad, "RemoveProfile", {"Identifier": "org.schoolmdm.wifi"})["Status"] == "Acknowledged"
    assert ipad.profiles == {}
    r = run(ipad, "RemoveProfile", {"Identifier": "org.schoolmdm.wifi"})
    assert r["Status"] == "Error" and r["ErrorChain"][0]["ErrorDomain"] == "MCMDMErrorDomain"


def test_restrictions_and_certificate_list(ipad, world):
    extra_ca = pki.create_ca("Schul-Proxy CA", "Test City Schools").cert
    p = profile("org.schoolmdm.r")
    p["PayloadContent"] = [
        {"PayloadType": "com.apple.applicationaccess", "PayloadVersion": 1, "PayloadIdentifier": "r.1",
         "PayloadUUID": "R1", "allowCamera": False, "allowAppInstallation": True, "forceEncryptedBackup": True},
        {"PayloadType": "com.apple.security.root", "PayloadVersion": 1, "PayloadIdentifier": "r.2",
         "PayloadUUID": "R2", "PayloadContent": extra_ca.public_bytes(serialization.Encoding.DER)},
    ]
    run(ipad, "InstallProfile", {"Payload": signed(p, world["signing"])})
    r = run(ipad, "Restrictions")
    rb = r["GlobalRestrictions"]["restrictedBool"]
    assert rb["allowCamera"] == {"value": False} and rb["forceEncryptedBackup"] == {"value": True}
    assert "org.schoolmdm.r" in r["ProfileRestrictions"]
    certs = run(ipad, "CertificateList")["CertificateList"]
    names = {c["CommonName"]: c["IsIdentity"] for c in certs}
    assert names == {"Test Device CA": False, ipad.serial: True, "Schul-Proxy CA": False}
    assert all(isinstance(x509.load_der_x509_certificate(c["Data"]), x509.Certificate) for c in certs)


# -- queries ------------------------------------------------------------------------------------
def test_device_information_answers_the_queries_asked(ipad):
    r = run(ipad, "DeviceInformation", {"Queries": ["UDID", "SerialNumber", "ModelName", "ProductName",
                                                    "OSVersion", "DeviceCapacity", "BatteryLevel", "NoSuchKey"]})
    q = r["QueryResponses"]
    assert set(q) == {"UDID", "SerialNumber", "ModelName", "ProductName", "OSVersion", "DeviceCapacity",
                      "BatteryLevel"}
    assert q["UDID"] == ipad.udid and q["SerialNumber"] == ipad.serial and q["ModelName"] == "iPad"
    assert q["ProductName"].startswith("iPad") and q["OSVersion"].startswith("17.")
    assert 0 < q["BatteryLevel"] <= 1 and q["DeviceCapacity"] > 50


def test_device_information_default_queries_are_all_answered(ipad):
    q = run(ipad, "DeviceInformation")["QueryResponses"]  # new_command fills the server's default list
    for key in ("WiFiMAC", "BluetoothMAC", "IsSupervised", "AvailableDeviceCapacity", "Model", "BuildVersion",
                "TimeZone", "Languages", "IsMDMLostModeEnabled"):
        assert key in q
    assert q["AvailableDeviceCapacity"] < q["DeviceCapacity"]


def test_security_info_and_app_lists(ipad):
    assert run(ipad, "SecurityInfo")["SecurityInfo"]["HardwareEncryptionCaps"] == 3
    apps = run(ipad, "InstalledApplicationList")["InstalledApplicationList"]
    assert {"com.apple.Pages", "com.apple.Keynote"} <= {a["Identifier"] for a in apps}
    assert all({"Identifier", "Name", "ShortVersion", "Version", "BundleSize"} <= set(a) for a in apps)
    assert run(ipad, "ManagedApplicationList")["ManagedApplicationList"] == {}


def test_install_and_remove_application(ipad):
    r = run(ipad, "InstallApplication", {"iTunesStoreID": 1444383602, "ManagementFlags": 1})
    assert (r["Status"], r["Identifier"], r["State"]) == ("Acknowledged", "com.goodnotesapp.x", "Installing")
    managed = run(ipad, "ManagedApplicationList")["ManagedApplicationList"]
    assert managed["com.goodnotesapp.x"]["Status"] == "Installing"
    ipad.begin_session()
    managed = run(ipad, "ManagedApplicationList")["ManagedApplicationList"]
    assert managed["com.goodnotesapp.x"]["Status"] == "Managed"
    only = run(ipad, "InstalledApplicationList", {"ManagedAppsOnly": True})["InstalledApplicationList"]
    assert [a["Name"] for a in only] == ["GoodNotes 5"]
    assert run(ipad, "RemoveApplication", {"Identifier": "com.goodnotesapp.x"})["Status"] == "Acknowledged"
    assert run(ipad, "RemoveApplication", {"Identifier": "com.goodnotesapp.x"})["Status"] == "Error"
    assert run(ipad, "InstallApplication", {"Identifier": "com.apple.clips"})["Identifier"] == "com.apple.clips"
    assert run(ipad, "InstallApplication", {})["Status"] == "CommandFormatError"


def test_settings_apply_name_and_time_zone(ipad):
    r = run(ipad, "Settings", {"Settings": [{"Item": "DeviceName", "DeviceName": "GS-Nord 07"},
                                            {"Item": "TimeZone", "TimeZone": "Europe/Vienna"},
                                            {"Item": "Bluetooth", "Enabled": False}]})
    assert r["Status"] == "Acknowledged"
    assert r["Settings"] == [{"Item": i, "Status": "Acknowledged"} for i in ("DeviceName", "TimeZone", "Bluetooth")]
    q = run(ipad, "DeviceInformation", {"Queries": ["DeviceName", "TimeZone"]})["QueryResponses"]
    assert q == {"DeviceName": "GS-Nord 07", "TimeZone": "Europe/Vienna"}
    bad = run(ipad, "Settings", {"Settings": [{"Item": "Frobnicate"}]})
    assert bad["Status"] == "Error" and bad["Settings"][0]["Status"] == "Error"


def test_device_configured_clears_awaiting_configuration(world):
    d = make_ipad(world, awaiting_configuration=True)
    assert parse_checkin(d.token_update_message()).awaiting_configuration is True
    assert run(d, "DeviceConfigured")["Status"] == "Acknowledged"
    assert d.awaiting_configuration is False
    assert parse_checkin(d.token_update_message()).awaiting_configuration is False


def test_lost_mode_and_security_actions(ipad):
    assert run(ipad, "PlayLostModeSound")["Status"] == "Error"
    assert run(ipad, "EnableLostMode", {"Message": "Bitte im Sekretariat abgeben"})["Status"] == "Acknowledged"
    assert run(ipad, "PlayLostModeSound")["Status"] == "Acknowledged"
    assert run(ipad, "DisableLostMode")["Status"] == "Acknowledged"
    assert run(ipad, "DisableLostMode")["Status"] == "Error"
    for rt in ("DeviceLock", "RestartDevice", "ShutDownDevice"):
        assert run(ipad, rt)["Status"] == "Acknowledged"
    assert run(ipad, "ClearPasscode", {"UnlockToken": b"wrong"})["Status"] == "Error"
    assert run(ipad, "ClearPasscode", {"UnlockToken": ipad.unlock_token})["Status"] == "Acknowledged"
    assert ipad.actions == {"DeviceLock": 1, "RestartDevice": 1, "ShutDownDevice": 1, "PlayLostModeSound": 1,
                            "ClearPasscode": 1}


def test_erase_device_leaves_mdm(ipad, world):
    run(ipad, "InstallProfile", {"Payload": signed(profile(), world["signing"])})
    assert run(ipad, "EraseDevice")["Status"] == "Acknowledged"
    assert ipad.erased and not ipad.enrolled and ipad.profiles == {}


def test_unknown_and_malformed_commands(ipad):
    raw = plist.dumps({"CommandUUID": "C-1", "Command": {"RequestType": "FrobnicateDevice"}})
    r = parse_report(ipad.handle_command(raw))
    assert r.status == "Error" and r.command_uuid == "C-1"
    assert r.error_chain[0]["ErrorDomain"] == "MCMDMErrorDomain"
    r = parse_report(ipad.handle_command(plist.dumps({"CommandUUID": "C-2", "Command": "nope"})))
    assert r.status == "CommandFormatError" and r.command_uuid == "C-2"
    with pytest.raises(ParseError):
        ipad.handle_command(plist.dumps({"Command": {"RequestType": "DeviceLock"}}))


def test_every_server_command_has_a_handler():
    from mdm.commands import known_request_types

    assert set(known_request_types()) <= set(handled_request_types())


# -- NotNow and double application -----------------------------------------------------------
def test_not_now_once_then_executed(world):
    d = make_ipad(world, not_now_once={"InstallProfile"})
    cmd = new_command("InstallProfile", {"Payload": signed(profile(), world["signing"])})
    first = parse_report(d.handle_command(cmd.to_plist()))
    assert first.status == "NotNow" and first.command_uuid == cmd.command_uuid
    assert d.needs_retry and d.profiles == {} and d.applied[cmd.command_uuid] == 0
    again = parse_report(d.handle_command(cmd.to_plist()))  # resent in the same session: still NotNow
    assert again.status == "NotNow"
    d.begin_session()
    assert not d.needs_retry
    second = parse_report(d.handle_command(cmd.to_plist()))
    assert second.status == "Acknowledged" and "org.schoolmdm.wifi" in d.profiles
    assert d.commands == {("InstallProfile", "NotNow"): 2, ("InstallProfile", "Acknowledged"): 1}
    assert d.double_applications == 0
    # another command of another type is not deferred
    assert run(d, "DeviceLock")["Status"] == "Acknowledged"


def test_double_application_of_non_idempotent_commands(ipad):
    assert "DeviceLock" in NON_IDEMPOTENT
    run(ipad, "DeviceLock", command_uuid="LOCK-1")
    assert ipad.double_applications == 0
    run(ipad, "DeviceLock", command_uuid="LOCK-1")
    assert ipad.applied["LOCK-1"] == 2 and ipad.double_applications == 1
    run(ipad, "DeviceLock", command_uuid="LOCK-2")
    run(ipad, "DeviceInformation", command_uuid="INFO-1")
    run(ipad, "DeviceInformation", command_uuid="INFO-1")  # idempotent: no double application
    assert ipad.double_applications == 1 and ipad.actions["DeviceLock"] == 3


def test_double_application_of_a_profile_install(ipad, world):
    payload = {"Payload": signed(profile(), world["signing"])}
    run(ipad, "InstallProfile", payload, command_uuid="P-1")
    run(ipad, "InstallProfile", payload, command_uuid="P-2")  # same profile, new command: fine
    assert ipad.double_applications == 0
    run(ipad, "InstallProfile", payload, command_uuid="P-1")
    assert ipad.double_applications == 1
    assert ipad.profile_meta["org.schoolmdm.wifi"]["installs"] == 3


def test_failed_commands_do_not_count_as_applied(ipad):
    run(ipad, "PlayLostModeSound", command_uuid="S-1")
    run(ipad, "PlayLostModeSound", command_uuid="S-1")
    assert ipad.applied["S-1"] == 0 and ipad.double_applications == 0


# -- check-in messages, enrollment profile, inventory, keys -----------------------------------
def test_checkin_messages_parse_as_apple_messages(ipad):
    auth = parse_checkin(ipad.authenticate_message())
    assert isinstance(auth, Authenticate)
    assert (auth.udid, auth.serial_number, auth.model_name) == (ipad.udid, ipad.serial, "iPad")
    assert auth.product_name.startswith("iPad") and auth.os_version and auth.build_version
    tu = parse_checkin(ipad.token_update_message())
    assert isinstance(tu, TokenUpdate)
    assert tu.token == ipad.token and len(tu.token) == 32 and tu.push_magic == ipad.push_magic
    assert tu.unlock_token == ipad.unlock_token and tu.topic == ipad.topic
    assert parse_checkin(ipad.checkout_message()).message_type == "CheckOut"
    idle = parse_report(ipad.idle_report())
    assert idle.is_idle and ipad.idle_report() is ipad.idle_report()


def _enrollment_der(world, **over) -> bytes:
    params = EnrollmentParams(
        org="Test City Schools", school_id="gs-nord", school_name="Grundschule Nord",
        server_url="https://mdm.test/mdm/connect", checkin_url="https://mdm.test/mdm/checkin",
        scep_url="https://mdm.test/scep", topic="com.apple.mgmt.External.t", challenge="ch-1",
        ca_cert=world["ca"].cert, serial="SIM0001")
    p = enrollment_profile(params)
    for k, v in over.items():
        p = v(copy.deepcopy(p))
    return sign_profile(plist.dumps(p), world["signing"])


def test_parse_enrollment_profile(world):
    cfg = parse_enrollment_profile(_enrollment_der(world))
    assert cfg.ca_cert == world["ca"].cert and cfg.challenge == "ch-1"
    assert cfg.scep_url == "https://mdm.test/scep" and cfg.server_url == "https://mdm.test/mdm/connect"
    assert cfg.checkin_url == "https://mdm.test/mdm/checkin" and cfg.topic == "com.apple.mgmt.External.t"
    assert cfg.subject.rfc4514_string() == "CN=SIM0001,OU=gs-nord,O=Test City Schools"
    assert cfg.sign_message and cfg.key_size == 2048
    ca_der = world["ca"].cert.public_bytes(serialization.Encoding.DER)
    assert pick_ca(ca_der, cfg.ca_fingerprint) == world["ca"].cert
    with pytest.raises(ParseError):
        pick_ca(ca_der, hashlib.sha256(b"other").digest())


def test_enrollment_profile_signed_outside_its_ca_is_refused(world):
    other = pki.create_ca("Evil", "Evil").cert

    def swap_root(p):
        p["PayloadContent"][0]["PayloadContent"] = other.public_bytes(serialization.Encoding.DER)
        return p

    with pytest.raises(ParseError):
        parse_enrollment_profile(_enrollment_der(world, root=swap_root))


def test_subject_name_accepts_multi_valued_rdns():
    name = subject_name([[["O", "Stadt"]], [["CN", "X1"], ["OU", "gs"]]])
    assert len(name.rdns) == 2 and len(name.rdns[1]) == 2
    with pytest.raises(ParseError):
        subject_name([[["NOPE", "x"]]])


def test_hardware_is_deterministic_and_realistic():
    a, b = hardware_for("SIM00042"), hardware_for("SIM00042")
    assert a == b and a.udid != hardware_for("SIM00043").udid
    assert a.product_name.startswith("iPad") and a.model.endswith("FD/A")
    assert len(a.udid) == 25 and a.udid[8] == "-"
    assert a.wifi_mac.count(":") == 5 and a.wifi_mac != a.bluetooth_mac
    s = random_serial()
    assert len(s) == 10 and s.isalnum()


def test_key_pool_round_robin_and_disk_cache(tmp_path):
    pool = KeyPool(2, tmp_path)
    k0, k1, k2 = pool.next(), pool.next(), pool.next()
    assert k0 is k2 and k0 is not k1 and pool.generated == 2
    files = sorted(tmp_path.iterdir())
    assert len(files) == 2 and all(stat.S_IMODE(os.stat(f).st_mode) == 0o600 for f in files)
    again = KeyPool(2, tmp_path)
    again.warm()
    assert again.generated == 0 and again.loaded == 2
    assert again.key(1).private_numbers() == k1.private_numbers()


def test_signature_cache_reuses_idle_signatures(ipad):
    cache, signer = SignatureCache(), DetachedSigner(ipad.cert, ipad.key)
    a = cache.sign(ipad.idle_report(), signer)
    b = cache.sign(ipad.idle_report(), signer)
    assert a == b and (cache.hits, cache.misses) == (1, 1)
    other = cache.sign(ipad.idle_report() + b" ", signer)
    assert other != a and (cache.hits, cache.misses) == (1, 2)
    from mdm.signature import SignatureVerifier

    verifier = SignatureVerifier([ipad.ca_cert])
    assert verifier.verify(b, ipad.idle_report()).cert == ipad.cert


# -- fleet push routing (no network: sessions are stubbed) -------------------------------------
def test_fleet_routes_pushes_and_coalesces(world):
    async def scenario():
        fleet = Fleet(insecure=True, keys=KeyPool(1), retry_delay=0)
        client = fleet.add_device("SIM0001")
        d = client.device
        d.enroll(key=world["device_key"], cert=make_ipad(world).cert, ca_cert=world["ca"].cert,
                 topic="t", server_url="https://x/mdm/connect", checkin_url="https://x/mdm/checkin")
        gate, calls = asyncio.Event(), []

        async def session():
            calls.append(1)
            await gate.wait()
            return 0

        client.connect_session = session
        push = {"seq": 1, "token": d.token.hex(), "topic": "t", "payload": {"mdm": d.push_magic}}
        assert fleet.handle_push(push) and fleet.handle_push(push)  # before the session starts: one session
        await asyncio.sleep(0)
        assert calls == [1]
        assert fleet.handle_push(push) and fleet.handle_push(push)  # during it: coalesced into one more
        assert not fleet.handle_push({**push, "payload": {"mdm": "wrong"}})
        assert not fleet.handle_push({**push, "token": "00" * 32})
        gate.set()
        assert await fleet.drain(timeout=5)
        stats = fleet.stats()
        await fleet.aclose()
        return calls, stats

    calls, stats = asyncio.run(scenario())
    assert len(calls) == 2
    assert stats["pushes"]["pushes_matched"] == 4 and stats["pushes"]["pushes_coalesced"] == 3
    assert stats["pushes"]["pushes_ignored"] == 1 and stats["pushes"]["pushes_other"] == 1
    assert isinstance(ClientStats().errors, dict)
