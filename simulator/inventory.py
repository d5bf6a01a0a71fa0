"""Realistic iPad facts for the fleet simulator: models, serials, UDIDs, MACs, apps,
and the Apple-shaped query answers built from them (DeviceInformation, SecurityInfo,
application lists, Restrictions).

Values are what German school iPads report (region ``FD/A``, Europe/Berlin, de-DE):
iPad (9th and 10th generation), iPad Air (5th generation) and iPad mini (6th generation)
on iPadOS 17.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import secrets
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

#: (ProductName, marketing name, model number, capacity GB, cellular, chip id for the UDID, weight)
MODELS: tuple[tuple[str, str, str, int, bool, str, int], ...] = (
    ("iPad12,1", "iPad (9th generation)", "MK2K3", 64, False, "8030", 30),
    ("iPad12,1", "iPad (9th generation)", "MK2P3", 256, False, "8030", 5),
    ("iPad12,2", "iPad (9th generation)", "MK473", 64, True, "8030", 4),
    ("iPad13,18", "iPad (10th generation)", "MPQ03", 64, False, "8101", 35),
    ("iPad13,18", "iPad (10th generation)", "MPQ83", 256, False, "8101", 6),
    ("iPad13,19", "iPad (10th generation)", "MQ6K3", 64, True, "8101", 5),
    ("iPad13,16", "iPad Air (5th generation)", "MM9C3", 64, False, "8103", 10),
    ("iPad14,1", "iPad mini (6th generation)", "MK7M3", 64, False, "8110", 5),
)
#: (OSVersion, BuildVersion, weight)
OS_VERSIONS: tuple[tuple[str, str, int], ...] = (("17.5.1", "21F90", 85), ("17.4.1", "21E237", 15))
REGION = "FD/A"
TIME_ZONE = "Europe/Berlin"
LANGUAGES = ["de-DE", "en-DE"]
LOCALES = ["de_DE"]
_OUIS = ("f0:18:98", "a4:83:e7", "3c:22:fb", "88:66:5a", "bc:d0:74")
_SERIAL_ALPHABET = "0123456789CDFGHJKLMNPQRTVWXY"  # Apple's randomized 10-character serials

#: App Store apps: iTunesStoreID -> (Identifier, Name, ShortVersion, BundleSize bytes)
CATALOG: dict[int, tuple[str, str, str, int]] = {
    361309726: ("com.apple.Pages", "Pages", "13.2", 498_155_520),
    361304891: ("com.apple.Numbers", "Numbers", "13.2", 462_118_912),
    361285480: ("com.apple.Keynote", "Keynote", "13.2", 588_316_672),
    377298193: ("com.apple.iMovie", "iMovie", "3.5.1", 712_441_856),
    408709785: ("com.apple.mobilegarageband", "GarageBand", "2.3.15", 1_810_210_816),
    1212699939: ("com.apple.clips", "Clips", "3.1.5", 402_653_184),
    1444383602: ("com.goodnotesapp.x", "GoodNotes 5", "5.9.107", 238_641_152),
    586447913: ("com.microsoft.Office.Word", "Microsoft Word", "2.85", 301_989_888),
    442378070: ("com.redjumper.bookcreator", "Book Creator", "5.8.2", 96_468_992),
}
# Apple's MCProfileErrorDomain codes
MALFORMED, UNSUPPORTED_VERSION, MISSING_FIELD, BAD_TYPE, BAD_SIGNATURE = 1000, 1001, 1002, 1003, 1004
EMPTY, CANNOT_DECRYPT, NON_UNIQUE_UUIDS, NON_UNIQUE_IDS, INSTALL_FAILED = 1005, 1006, 1007, 1008, 1009
_CERT_PAYLOADS = ("com.apple.security.root", "com.apple.security.pkcs1", "com.apple.security.pem")
_SUMMARY_KEYS = ("PayloadIdentifier", "PayloadUUID", "PayloadDisplayName", "PayloadVersion",
                 "PayloadOrganization", "PayloadDescription")
#: what a new iPad comes with (Apple's free apps, installed by the user, not managed)
PREINSTALLED = (361309726, 361304891, 361285480, 377298193, 408709785)


@dataclass(frozen=True)
class Hardware:
    """The facts of one iPad that never change."""

    serial: str
    udid: str
    product_name: str
    marketing_name: str
    model_number: str
    capacity_gb: int
    cellular: bool
    wifi_mac: str
    bluetooth_mac: str
    imei: str | None
    os_version: str
    build_version: str
    battery_level: float
    used_gb: float = field(default=0.0)

    @property
    def model(self) -> str:
        return self.model_number + REGION

    @property
    def device_capacity(self) -> float:
        """Capacity as iPadOS reports it (GB after formatting, two decimals)."""
        return round(self.capacity_gb * 0.9305, 2)


def random_serial(rng: random.Random | None = None) -> str:
    r = rng or secrets.SystemRandom()
    return "".join(r.choice(_SERIAL_ALPHABET) for _ in range(10))


def _mac(h: bytes, offset: int = 0) -> str:
    n = (int.from_bytes(h[:3], "big") + offset) & 0xFFFFFF
    tail = n.to_bytes(3, "big")
    return _OUIS[h[3] % len(_OUIS)] + ":" + ":".join(f"{b:02x}" for b in tail)


def _luhn_digit(digits: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            d = d - 9 if d > 9 else d
        total += d
    return str((10 - total % 10) % 10)


def hardware_for(serial: str) -> Hardware:
    """Deterministic hardware for a serial number (the same serial is the same iPad)."""
    h = hashlib.sha256(b"schoolmdm-sim/" + serial.encode()).digest()
    rng = random.Random(h)
    product, marketing, number, capacity, cellular, chip, _ = rng.choices(MODELS, [m[6] for m in MODELS])[0]
    os_version, build, _ = rng.choices(OS_VERSIONS, [o[2] for o in OS_VERSIONS])[0]
    udid = f"0000{chip}-{h[8:16].hex().upper()}"
    imei = None
    if cellular:
        body = "35" + "".join(str(rng.randrange(10)) for _ in range(12))
        imei = body + _luhn_digit(body)
    return Hardware(
        serial=serial, udid=udid, product_name=product, marketing_name=marketing,
        model_number=number, capacity_gb=capacity, cellular=cellular,
        wifi_mac=_mac(h[16:20]), bluetooth_mac=_mac(h[16:20], 1), imei=imei,
        os_version=os_version, build_version=build,
        battery_level=round(rng.uniform(0.35, 1.0), 2), used_gb=round(rng.uniform(9.0, 18.0), 2),
    )


def app_entry(store_id: int | None, identifier: str | None = None) -> dict:
    """An InstalledApplicationList entry for a catalog app (or a plausible unknown one)."""
    if store_id in CATALOG:
        ident, name, version, size = CATALOG[store_id]
    else:
        ident = identifier or f"com.appstore.app{store_id}"
        name, version, size = ident.rsplit(".", 1)[-1].capitalize(), "1.0", 52_428_800
        store_id = store_id or int(hashlib.sha256(ident.encode()).hexdigest()[:8], 16)
    return {
        "Identifier": ident, "Name": name, "ShortVersion": version,
        "Version": version.replace(".", "") or "1", "BundleSize": size,
        "DynamicSize": size // 20, "ExternalVersionIdentifier": 860_000_000 + store_id % 10_000_000,
        "IsValidated": True, "Installing": False, "AppStoreVendable": True, "DeviceBasedVPP": False,
        "BetaApp": False, "AdHocCodeSigned": False, "HasUpdateAvailable": False, "IsAppClip": False,
        "iTunesStoreID": store_id,
    }


def device_information(hw: Hardware, state: dict) -> dict:
    """Every DeviceInformation answer this iPad knows; ``state`` holds the mutable facts."""
    apps_gb = sum(a["BundleSize"] + a["DynamicSize"] for a in state["apps"].values()) / 1e9
    info = {
        "UDID": hw.udid, "SerialNumber": hw.serial, "DeviceName": state["device_name"],
        "OSVersion": hw.os_version, "BuildVersion": hw.build_version,
        "SupplementalBuildVersion": hw.build_version, "ModelName": "iPad", "Model": hw.model,
        "ModelNumber": hw.model_number, "RegionInfo": REGION, "ProductName": hw.product_name,
        "DeviceCapacity": hw.device_capacity,
        "AvailableDeviceCapacity": round(max(1.0, hw.device_capacity - hw.used_gb - apps_gb), 2),
        "BatteryLevel": hw.battery_level, "CellularTechnology": 3 if hw.cellular else 0,
        "WiFiMAC": hw.wifi_mac, "BluetoothMAC": hw.bluetooth_mac,
        "IsSupervised": state["supervised"], "IsDeviceLocatorServiceEnabled": False,
        "IsActivationLockEnabled": False, "IsCloudBackupEnabled": False,
        "IsMDMLostModeEnabled": state["lost_mode"], "IsMultiUser": False,
        "IsDoNotDisturbInEffect": False, "IsNetworkTethered": False,
        "PersonalHotspotEnabled": state["settings"].get("PersonalHotspot", False),
        "ITunesStoreAccountIsActive": False, "AwaitingConfiguration": state["awaiting_configuration"],
        "TimeZone": state["time_zone"], "Languages": list(LANGUAGES), "Locales": list(LOCALES),
        "EASDeviceIdentifier": hashlib.sha1(hw.udid.encode()).hexdigest()[:32].upper(),
        "OSUpdateSettings": {"AutoCheckEnabled": True, "BackgroundDownloadEnabled": True,
                             "AutomaticOSInstallationEnabled": False, "CatalogURL": ""},
    }
    if hw.cellular and hw.imei:
        info.update({"IMEI": hw.imei, "ModemFirmwareVersion": "1.52.01", "IsRoaming": False,
                     "DataRoamingEnabled": state["settings"].get("DataRoaming", False)})
    return info


def security_info(state: dict) -> dict:
    return {
        "HardwareEncryptionCaps": 3, "PasscodePresent": state["passcode_present"],
        "PasscodeCompliant": True, "PasscodeCompliantWithProfiles": True,
        "PasscodeLockGracePeriodEnforced": 0,
        "ManagementStatus": {"EnrolledViaDEP": False, "IsUserEnrollment": False,
                             "IsActivationLockManageable": state["supervised"]},
    }


def restrictions(profiles: dict[str, dict]) -> dict:
    """The Restrictions answer: each profile's com.apple.applicationaccess keys and their
    combination (an ``allow*`` false wins, a ``force*`` true wins, numbers take the minimum)."""
    per_profile: dict[str, dict] = {}
    bools: dict[str, bool] = {}
    values: dict[str, int] = {}
    for ident, profile in profiles.items():
        b: dict[str, dict] = {}
        v: dict[str, dict] = {}
        for payload in profile.get("PayloadContent", []):
            if payload.get("PayloadType") != "com.apple.applicationaccess":
                continue
            for k, val in payload.items():
                if k.startswith("Payload"):
                    continue
                if isinstance(val, bool):
                    b[k] = {"value": val}
                    restrictive = (not val) if k.startswith("allow") else val
                    prev = bools.get(k)
                    bools[k] = val if prev is None or restrictive else prev
                elif isinstance(val, int):
                    v[k] = {"value": val}
                    values[k] = min(values.get(k, val), val)
        if b or v:
            per_profile[ident] = {"restrictedBool": b, "restrictedValue": v}
    return {
        "GlobalRestrictions": {
            "restrictedBool": {k: {"value": x} for k, x in sorted(bools.items())},
            "restrictedValue": {k: {"value": x} for k, x in sorted(values.items())},
            "intersection": {}, "union": {},
        },
        "ProfileRestrictions": per_profile,
    }


class ProfileInvalid(Exception):
    """A profile iPadOS would refuse; ``code`` is Apple's MCProfileErrorDomain code."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code


def validate_profile(p: dict) -> None:
    """The checks iPadOS makes before installing a (decrypted) Configuration profile."""
    def need(d: dict, key: str, kind: type) -> None:
        if key not in d:
            raise ProfileInvalid(MISSING_FIELD, f"The profile is missing the required field “{key}”.")
        if not isinstance(d[key], kind) or isinstance(d[key], bool) or (kind is str and not d[key]):
            raise ProfileInvalid(BAD_TYPE, f"The field “{key}” has the wrong type.")

    if p.get("PayloadType") != "Configuration":
        raise ProfileInvalid(MALFORMED, "The profile is not a Configuration profile.")
    for key in ("PayloadIdentifier", "PayloadUUID"):
        need(p, key, str)
    need(p, "PayloadVersion", int)
    if p["PayloadVersion"] != 1:
        raise ProfileInvalid(UNSUPPORTED_VERSION, "The profile version is not supported.")
    need(p, "PayloadContent", list)
    if not p["PayloadContent"]:
        raise ProfileInvalid(EMPTY, "The profile is empty.")
    uuids, idents = [p["PayloadUUID"]], []
    for item in p["PayloadContent"]:
        if not isinstance(item, dict):
            raise ProfileInvalid(BAD_TYPE, "A payload is not a dictionary.")
        for key in ("PayloadType", "PayloadIdentifier", "PayloadUUID"):
            need(item, key, str)
        if item["PayloadType"] == "com.apple.mdm":
            raise ProfileInvalid(INSTALL_FAILED, "An MDM payload cannot be installed by MDM.")
        uuids.append(item["PayloadUUID"])
        idents.append(item["PayloadIdentifier"])
    if len(set(uuids)) != len(uuids):
        raise ProfileInvalid(NON_UNIQUE_UUIDS, "The profile has payloads with the same UUID.")
    if len(set(idents)) != len(idents):
        raise ProfileInvalid(NON_UNIQUE_IDS, "The profile has payloads with the same identifier.")


def profile_list_entry(profile: dict, *, managed: bool, encrypted: bool = False) -> dict:
    """One ProfileList item, with a summary of each payload."""
    entry = {k: profile[k] for k in _SUMMARY_KEYS if k in profile}
    entry["PayloadDisplayName"] = profile.get("PayloadDisplayName", profile["PayloadIdentifier"])
    entry.update({
        "IsManaged": managed, "IsEncrypted": encrypted, "HasRemovalPasscode": False,
        "PayloadRemovalDisallowed": bool(profile.get("PayloadRemovalDisallowed", False)),
        "PayloadContent": [{k: p[k] for k in ("PayloadType", *_SUMMARY_KEYS) if k in p}
                           for p in profile.get("PayloadContent", []) if isinstance(p, dict)],
    })
    return entry


def profile_certificates(profiles: dict[str, dict]) -> list[x509.Certificate]:
    """Certificates installed by certificate payloads (root, pkcs1, pem)."""
    out = []
    for profile in profiles.values():
        for p in profile.get("PayloadContent", []):
            data = p.get("PayloadContent")
            if p.get("PayloadType") in _CERT_PAYLOADS and isinstance(data, bytes):
                try:
                    out.append(x509.load_pem_x509_certificate(data) if data.lstrip().startswith(b"-----")
                               else x509.load_der_x509_certificate(data))
                except ValueError:
                    continue
    return out


def certificate_entry(cert: x509.Certificate, *, identity: bool) -> dict:
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return {"CommonName": str(cn[0].value) if cn else cert.subject.rfc4514_string(),
            "Data": cert.public_bytes(serialization.Encoding.DER), "IsIdentity": identity}


def device_location(udid: str, now: dt.datetime) -> dict:
    """A DeviceLocation answer: somewhere in Berlin, stable per device."""
    h = hashlib.sha256(udid.encode()).digest()
    return {"Latitude": round(52.45 + h[0] / 2550, 6), "Longitude": round(13.30 + h[1] / 2550, 6),
            "Altitude": 41.0, "HorizontalAccuracy": 12.0, "VerticalAccuracy": 8.0, "Speed": 0.0,
            "Course": -1.0, "Timestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ")}
