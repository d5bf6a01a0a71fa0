"""Payload builders, commands and the identity issuer, one by one."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from pydantic import ValidationError

from mdm.pki import create_ca, new_key
from profiles.blueprint.errors import BlueprintError
from profiles.blueprint.models import App, Blueprint
from profiles.blueprint.classroom import Classroom
from profiles.blueprint.sections import (
    Exam, HomeScreen, Notification, Passcode, Restrictions, WebFilter, WifiNetwork,
)
from profiles.commands import (
    device_name_command, expand_device_name, install_application, remove_application, school_commands,
)
from profiles.issuer import CAIssuer, pkcs12_bytes
from profiles.payloads.applock import applock_payload
from profiles.payloads.common import Namer, certificate_payload, pem_to_ders
from profiles.payloads.education import education_payloads
from profiles.payloads.homescreen import homescreen_payload
from profiles.payloads.notifications import notifications_payload
from profiles.payloads.passcode import passcode_payload
from profiles.payloads.restrictions import restrictions_payload
from profiles.payloads.webfilter import webfilter_payload
from profiles.payloads.wifi import wifi_payload
from profiles.schema.checker import check_command, check_payload
from profiles.wifi_profile import wifi_psk_profile

NAMER = Namer("org.test.school.pupil.x", "11111111-2222-5333-8444-555555555555")


def ok(payload: dict) -> dict:
    """The payload has no schema errors (warnings allowed); returns it."""
    errs = [i for i in check_payload(payload, supervised=True) if i.severity == "error"]
    assert errs == [], errs
    return payload


def _cert(cn: str, *, issuer_key=None, issuer_name: str | None = None, ca: bool = True) -> tuple[bytes, object]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]) if issuer_name else subject
    now = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
            .serial_number(7).not_valid_before(now).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(issuer_key or key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER), key


@pytest.fixture(scope="module")
def ca():
    return create_ca("Classroom CA", "Test City")


@pytest.fixture(scope="module")
def issuer(ca):
    return CAIssuer(ca, key=new_key(), password="s3cret")


# --- Wi-Fi -----------------------------------------------------------------------------------------


def test_wpa2_and_wpa3_personal():
    p = ok(wifi_payload(NAMER, WifiNetwork(ssid="GS-Nord", security="WPA2", password="12345678", hidden=True,
                                           auto_join=False)))
    assert p["PayloadType"] == "com.apple.wifi.managed"
    assert {k: p[k] for k in ("SSID_STR", "EncryptionType", "Password", "HIDDEN_NETWORK", "AutoJoin")} == {
        "SSID_STR": "GS-Nord", "EncryptionType": "WPA2", "Password": "12345678", "HIDDEN_NETWORK": True,
        "AutoJoin": False}
    assert "ProxyType" not in p and "EAPClientConfiguration" not in p
    wpa3 = ok(wifi_payload(NAMER, WifiNetwork(ssid="X", security="WPA3", password="12345678")))
    assert wpa3["EncryptionType"] == "WPA3"
    open_net = ok(wifi_payload(NAMER, WifiNetwork(ssid="Gast", security="None")))
    assert open_net["EncryptionType"] == "None" and "Password" not in open_net


def test_proxies():
    manual = WifiNetwork(ssid="X", password="12345678", proxy={"mode": "manual", "server": "proxy", "port": 3128})
    p = ok(wifi_payload(NAMER, manual))
    assert (p["ProxyType"], p["ProxyServer"], p["ProxyServerPort"]) == ("Manual", "proxy", 3128)
    auto = WifiNetwork(ssid="X", password="12345678", proxy={"mode": "auto", "pac_url": "https://p/p.pac"})
    p = ok(wifi_payload(NAMER, auto))
    assert (p["ProxyType"], p["ProxyPACURL"]) == ("Auto", "https://p/p.pac") and "ProxyServer" not in p
    with pytest.raises(ValidationError, match="server and port"):
        WifiNetwork(ssid="X", password="12345678", proxy={"mode": "manual", "server": "proxy"})


def test_peap_with_anchor():
    der, _ = _cert("RADIUS CA")
    pem = x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM).decode()
    net = WifiNetwork(ssid="Staff", security="WPA2-Enterprise",
                      eap={"method": "PEAP", "username": "t", "trusted_server_names": ["radius.x"],
                           "ca_certificate": pem})
    anchors = pem_to_ders(pem)
    p = ok(wifi_payload(NAMER, net, anchor_ders=anchors))
    cfg = p["EAPClientConfiguration"]
    assert cfg["AcceptEAPTypes"] == [25] and cfg["TLSTrustedServerNames"] == ["radius.x"] and cfg["UserName"] == "t"
    root = ok(certificate_payload(NAMER, anchors[0]))
    assert root["PayloadType"] == "com.apple.security.root" and root["PayloadContent"] == der
    assert cfg["PayloadCertificateAnchorUUID"] == [root["PayloadUUID"]]
    assert p["EncryptionType"] == "WPA2" and "PayloadCertificateUUID" not in p


def test_eap_tls_needs_and_references_an_identity():
    net = WifiNetwork(ssid="Staff", security="WPA2-Enterprise",
                      eap={"method": "EAP-TLS", "trusted_server_names": ["radius.x"]})
    with pytest.raises(ValueError, match="client identity"):
        wifi_payload(NAMER, net)
    p = ok(wifi_payload(NAMER, net, identity_uuid=NAMER.uuid_for("id")))
    assert p["EAPClientConfiguration"]["AcceptEAPTypes"] == [13]
    assert p["PayloadCertificateUUID"] == NAMER.uuid_for("id")


def test_intermediate_ca_becomes_pkcs1():
    _, root_key = _cert("Root")
    der, _ = _cert("Intermediate", issuer_key=root_key, issuer_name="Root")
    assert ok(certificate_payload(NAMER, der))["PayloadType"] == "com.apple.security.pkcs1"


@pytest.mark.parametrize("kwargs, message", [
    ({"security": "WPA2"}, "8 to 63"),
    ({"security": "WPA2", "password": "x" * 64}, "8 to 63"),
    ({"security": "WPA2-Enterprise"}, "needs an eap"),
    ({"security": "None", "password": "12345678"}, "open network"),
    ({"security": "WPA2-Enterprise", "eap": {"method": "PEAP"}}, "trusted_server_names"),
    ({"security": "WPA2-Enterprise", "eap": {"method": "PEAP", "ca_certificate": "nope"}}, "not PEM"),
])
def test_wifi_validation(kwargs, message):
    with pytest.raises(ValidationError, match=message):
        WifiNetwork(ssid="X", **kwargs)


def test_a_ca_certificate_with_an_invalid_version_is_a_validation_error():
    from tests.support.certs import pem, with_version

    bad = pem(with_version(_cert("Radius CA")[0], 5))
    with pytest.raises(ValidationError, match="not PEM certificate data"):
        WifiNetwork(ssid="X", security="WPA2-Enterprise",
                    eap={"method": "PEAP", "trusted_server_names": ["radius.example"], "ca_certificate": bad})


# --- restrictions, web filter, home screen, notifications, exam, passcode ----------------------------


def test_restrictions_map_friendly_keys():
    r = Restrictions(camera=False, app_installation=False, classroom_auto_join=True, max_app_rating="12+",
                     blocked_apps=["com.example.game"], apple={"allowCamera": True, "allowNews": False})
    p = ok(restrictions_payload(NAMER, r))
    assert p["PayloadType"] == "com.apple.applicationaccess"
    assert p["allowAppInstallation"] is False and p["forceClassroomAutomaticallyJoinClasses"] is True
    assert p["ratingApps"] == 300 and p["blockedAppBundleIDs"] == ["com.example.game"]
    assert p["allowCamera"] is True and p["allowNews"] is False  # apple: wins
    assert restrictions_payload(NAMER, Restrictions()) is None


def test_restriction_friendly_keys_exist_in_apples_schema():
    from profiles.blueprint.restrictions import BOOL_KEYS, OTHER_KEYS
    from profiles.schema.checker import schema

    known = {n["k"]: n["t"] for n in schema()["payloads"]["com.apple.applicationaccess"]["keys"]}
    assert all(known[k] == "b" for k in BOOL_KEYS.values())
    assert all(k in known for k in OTHER_KEYS.values())


def test_web_filter_uses_current_key_names():
    wf = WebFilter(auto_filter=True, permitted_urls=["https://ok.example"], denied_urls=["https://bad.example"])
    p = ok(webfilter_payload(NAMER, wf))
    assert p["FilterType"] == "BuiltIn" and p["AutoFilterEnabled"] is True
    assert p["DenyListURLs"] == ["https://bad.example"] and p["PermittedURLs"] == ["https://ok.example"]
    assert "BlacklistedURLs" not in p and "WhitelistedBookmarks" not in p
    allow = ok(webfilter_payload(NAMER, WebFilter(bookmarks=[{"url": "https://a.example", "title": "A"}])))
    assert allow["AllowListBookmarks"] == [{"URL": "https://a.example", "Title": "A"}]
    assert "AutoFilterEnabled" not in allow
    assert webfilter_payload(NAMER, WebFilter()) is None
    with pytest.raises(ValidationError, match="allow-list mode"):
        WebFilter(auto_filter=True, bookmarks=[{"url": "https://a.example", "title": "A"}])
    with pytest.raises(ValidationError, match="https://"):
        WebFilter(auto_filter=True, denied_urls=["bad.example"])


def test_home_screen():
    hs = HomeScreen(dock=["com.apple.mobilesafari"],
                    pages=[["com.apple.Pages", {"folder": "Kreativ", "pages": [["com.apple.iMovie"]]}]])
    p = ok(homescreen_payload(NAMER, hs))
    assert p["Dock"] == [{"Type": "App", "BundleID": "com.apple.mobilesafari"}]
    assert p["Pages"] == [[{"Type": "App", "BundleID": "com.apple.Pages"},
                           {"Type": "Folder", "DisplayName": "Kreativ",
                            "Pages": [[{"Type": "App", "BundleID": "com.apple.iMovie"}]]}]]
    with pytest.raises(ValidationError, match="folders inside folders"):
        HomeScreen(pages=[[{"folder": "A", "pages": [[{"folder": "B"}]]}]])
    assert homescreen_payload(NAMER, HomeScreen()) is None


def test_notifications():
    ns = {"com.b.app": Notification(enabled=True, alerts="persistent", previews="never", grouping="off",
                                    badges=False, lock_screen=False),
          "com.a.app": Notification(enabled=False)}
    p = ok(notifications_payload(NAMER, ns))
    assert p["NotificationSettings"] == [
        {"BundleIdentifier": "com.a.app", "NotificationsEnabled": False},
        {"BundleIdentifier": "com.b.app", "NotificationsEnabled": True, "AlertType": 2, "BadgesEnabled": False,
         "ShowInLockScreen": False, "PreviewType": 2, "GroupingType": 2}]


def test_exam_single_app_mode():
    p = ok(applock_payload(NAMER, Exam(bundle_id="org.safeexambrowser.SafeExamBrowser", disable_auto_lock=True,
                                       user_options=["zoom"])))
    assert p["PayloadType"] == "com.apple.app.lock"
    assert p["App"] == {"Identifier": "org.safeexambrowser.SafeExamBrowser", "Options": {"DisableAutoLock": True},
                        "UserEnabledOptions": {"Zoom": True}}


def test_passcode():
    p = ok(passcode_payload(NAMER, Passcode(min_length=6, allow_simple=False, auto_lock_minutes=5)))
    assert {k: v for k, v in p.items() if not k.startswith("Payload")} == {
        "forcePIN": True, "minLength": 6, "allowSimple": False, "maxInactivity": 5}
    with pytest.raises(ValidationError):
        Passcode(max_failed_attempts=1)


# --- Classroom ------------------------------------------------------------------------------------------

CLASSROOM = Classroom(classes=[
    {"name": "5a", "group_id": 5, "teachers": [{"id": "t1", "name": "Frau A"}],
     "pupils": [{"id": "p1", "name": "Ali"}, {"id": "p2", "name": "Bea"}]},
    {"name": "6b", "group_id": 6, "teachers": ["t2"], "pupils": ["p3"]},
])
BP = Blueprint(city="Test City", organisation="Test Org", school={"id": "gs-x", "name": "GS X"})


def _edu(role, issuer, user=None):
    return education_payloads(NAMER, classroom=CLASSROOM, role=role, school=BP.school, organisation="Org",
                              organisation_uuid="0E3F2A1B-0000-5000-8000-000000000000", issuer=issuer, user=user)


def test_member_device(issuer, ca):
    payloads = [ok(p) for p in _edu("pupil", issuer, user="p2")]
    assert [p["PayloadType"] for p in payloads] == ["com.apple.security.root", "com.apple.security.pkcs12",
                                                    "com.apple.education"]
    root, ident, edu = payloads
    assert root["PayloadContent"] == ca.cert_der
    assert edu["LeaderPayloadCertificateAnchorUUID"] == [root["PayloadUUID"]]
    assert edu["MemberPayloadCertificateAnchorUUID"] == [root["PayloadUUID"]]
    assert edu["PayloadCertificateUUID"] == ident["PayloadUUID"]
    assert edu["UserIdentifier"] == "p2"
    assert edu["Users"] == [{"Identifier": "p2", "Name": "Bea"}, {"Identifier": "t1", "Name": "Frau A"}]
    assert edu["Groups"] == [{"BeaconID": 5, "Name": "5a", "LeaderIdentifiers": ["t1"],
                              "MemberIdentifiers": ["p1", "p2"]}]
    key, cert, chain = pkcs12.load_key_and_certificates(ident["PayloadContent"], ident["Password"].encode())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value.startswith("member")
    assert cert.issuer == ca.cert.subject and chain[0] == ca.cert
    ca.key.public_key().verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                               cert.signature_hash_algorithm)


def test_leader_device(issuer):
    payloads = [ok(p) for p in _edu("teacher", issuer)]
    assert [p["PayloadType"] for p in payloads] == ["com.apple.security.pkcs12", "com.apple.education"]
    ident, edu = payloads
    assert ident["PayloadDisplayName"].startswith("leader")
    assert "LeaderPayloadCertificateAnchorUUID" not in edu  # Apple ignores anchors on leader devices
    assert edu["UserIdentifier"] == "gs-x-teacher"
    assert [g["LeaderIdentifiers"] for g in edu["Groups"]] == [["t1", "gs-x-teacher"], ["t2", "gs-x-teacher"]]
    assert {u["Identifier"] for u in edu["Users"]} == {"gs-x-teacher", "t1", "t2", "p1", "p2", "p3"}


def test_classroom_validation_and_unknown_user(issuer):
    with pytest.raises(BlueprintError, match="leads no class"):
        _edu("teacher", issuer, user="p1")
    with pytest.raises(ValidationError, match="share group_id"):
        Classroom(classes=[{"name": "a", "group_id": 1}, {"name": "b", "group_id": 1}])
    with pytest.raises(ValidationError, match="two names"):
        Classroom(classes=[{"name": "a", "group_id": 1,
                            "pupils": [{"id": "x", "name": "A"}, {"id": "x", "name": "B"}]}])


def test_issuer_protocol_is_enforced():
    with pytest.raises(TypeError, match="anchors"):
        _edu("pupil", lambda cn: (b"", b""))


def test_ca_issuer_caches_and_pkcs12_opens(ca):
    iss = CAIssuer(ca, key=new_key(), password="pw")
    assert iss("member.x") is iss("member.x")
    assert CAIssuer(ca, cache=False, key=iss.key)("member.x") != iss("member.x")
    assert iss.anchors == (ca.cert_der,)
    key, cert, _ = pkcs12.load_key_and_certificates(pkcs12_bytes(ca, "pw"), b"pw")
    assert cert == ca.cert


# --- commands --------------------------------------------------------------------------------------------


def test_install_application():
    app = App(name="Keynote", itunes_id=361285480, bundle_id="com.apple.Keynote", prevent_backup=True,
              removable=False, config={"server": "https://x", "level": 3})
    cmd = install_application(app)
    assert cmd == {"RequestType": "InstallApplication", "iTunesStoreID": 361285480, "ManagementFlags": 5,
                   "Options": {"PurchaseMethod": 1}, "ChangeManagementState": "Managed",
                   "Configuration": {"server": "https://x", "level": 3}, "Attributes": {"Removable": False}}
    assert check_command(cmd) == []
    by_manifest = install_application(App(name="In-house", manifest_url="https://x/m.plist", vpp=False,
                                          remove_on_unenroll=False, take_management=False))
    assert by_manifest == {"RequestType": "InstallApplication", "ManifestURL": "https://x/m.plist"}
    assert check_command(by_manifest) == []
    by_id = install_application(App(name="X", bundle_id="com.example.x"))
    assert by_id["Identifier"] == "com.example.x" and check_command(by_id) == []


def test_app_validation():
    with pytest.raises(ValidationError, match="itunes_id, bundle_id or manifest_url"):
        App(name="Nothing")
    with pytest.raises(ValidationError, match="bundle_id"):
        App(name="Gone", itunes_id=1, state="absent")
    with pytest.raises(ValidationError, match="plist"):
        App(name="X", itunes_id=1, config={"when": dt.date(2024, 1, 1)})


def test_remove_and_settings_commands():
    assert remove_application("com.example.x") == {"RequestType": "RemoveApplication", "Identifier": "com.example.x"}
    bp = Blueprint(city="C", organisation="O", school={"id": "gy-x", "name": "Gymnasium X"},
                   settings={"timezone": "Europe/Berlin", "device_name": "{school}-{role}-{serial}"},
                   apps=[{"name": "A", "itunes_id": 1, "roles": ["teacher"]},
                         {"name": "B", "bundle_id": "com.example.b", "state": "absent"}])
    assert [c["RequestType"] for c in school_commands(bp, "pupil")] == ["RemoveApplication", "Settings"]
    assert [c["RequestType"] for c in school_commands(bp, "teacher")] == [
        "InstallApplication", "RemoveApplication", "Settings"]
    cmd = device_name_command(bp, "pupil", "DMPXK2ABCD")
    assert cmd == {"RequestType": "Settings",
                   "Settings": [{"Item": "DeviceName", "DeviceName": "gy-x-pupil-DMPXK2ABCD"}]}
    assert check_command(cmd) == []
    name = expand_device_name("{school_name} {user}", bp=bp, role="teacher", serial="S", user="anna")
    assert name == "Gymnasium X anna"
    with pytest.raises(BlueprintError, match="no user"):
        expand_device_name("{user}", bp=bp, role="pupil", serial="S")
    unnamed = Blueprint(city="C", organisation="O", school={"id": "a", "name": "A"})
    assert device_name_command(unnamed, "pupil", "S") is None


# --- the first end-to-end helper ----------------------------------------------------------------------------


def test_wifi_psk_profile():
    p = wifi_psk_profile("gs-nord", "Test City Schools", "GS-Nord", "supersecret")
    assert check_payload(p, supervised=False) == []
    assert p == wifi_psk_profile("gs-nord", "Test City Schools", "GS-Nord", "supersecret")
    assert p["PayloadType"] == "Configuration" and p["PayloadIdentifier"] == "org.schoolmdm.gs-nord.pupil.wifi"
    (wifi,) = p["PayloadContent"]
    assert (wifi["SSID_STR"], wifi["Password"], wifi["EncryptionType"]) == ("GS-Nord", "supersecret", "WPA2")
