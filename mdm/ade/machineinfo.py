"""MachineInfo: what a device in Setup Assistant POSTs to its ADE profile's ``url``.

A plist (``UDID``, ``SERIAL``, ``PRODUCT``, ``VERSION``, ``OS_VERSION``, ``IMEI``,
``MEID``, ``LANGUAGE``, ...) in a CMS SignedData with the content attached, signed by
the device's identity (on real hardware issued by Apple's device CA). Checking the CMS
signature is the caller's (``profiles.signing``); this module reads and builds the plist.
"""

from __future__ import annotations

from dataclasses import dataclass

from mdm import plist
from mdm.errors import ParseError

CONTENT_TYPE = "application/pkcs7-signature"
MAX_BYTES = 64 * 1024
_OPTIONAL = ("OS_VERSION", "IMEI", "MEID", "LANGUAGE", "SUPPLEMENTAL_BUILD_VERSION", "SOFTWARE_UPDATE_DEVICE_ID")


@dataclass(frozen=True)
class MachineInfo:
    udid: str
    serial: str
    product: str
    version: str  # build version, e.g. 21F90
    os_version: str | None = None
    imei: str | None = None
    meid: str | None = None
    language: str | None = None
    raw: bytes = b""


def parse_machine_info(content: bytes) -> MachineInfo:
    d = plist.loads_dict(content, max_bytes=MAX_BYTES)
    for key in ("UDID", "SERIAL", "PRODUCT", "VERSION"):
        v = d.get(key)
        if not isinstance(v, str) or not v.strip():
            raise ParseError(f"MachineInfo lacks {key}")
    serial = d["SERIAL"].strip()
    if not serial.isalnum() or len(serial) > 64:
        raise ParseError("MachineInfo SERIAL must be alphanumeric (at most 64 characters)")
    udid = d["UDID"].strip()
    if len(udid) > 64 or not all(c.isalnum() or c == "-" for c in udid):
        raise ParseError("MachineInfo UDID is malformed")
    opt = {k: d.get(k) if isinstance(d.get(k), str) else None for k in _OPTIONAL}
    return MachineInfo(udid=udid, serial=serial, product=d["PRODUCT"], version=d["VERSION"],
                       os_version=opt["OS_VERSION"], imei=opt["IMEI"], meid=opt["MEID"], language=opt["LANGUAGE"],
                       raw=content)


def build_machine_info(*, udid: str, serial: str, product: str, version: str, os_version: str | None = None,
                       imei: str | None = None, language: str | None = None) -> bytes:
    """The plist a device sends (unsigned; the device signs it with its identity)."""
    d = {"UDID": udid, "SERIAL": serial, "PRODUCT": product, "VERSION": version}
    for key, value in (("OS_VERSION", os_version), ("IMEI", imei), ("LANGUAGE", language)):
        if value is not None:
            d[key] = value
    return plist.dumps(d)
