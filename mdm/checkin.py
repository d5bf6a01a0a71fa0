"""Check-in messages (``PUT /mdm/checkin``), parsed from bytes into typed messages.

Class names are Apple's ``MessageType`` values. Every message keeps the raw
body and the parsed plist beside the typed fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from mdm import plist
from mdm.errors import Gone, ParseError, UnknownMessageType, UnsupportedMessageType


@dataclass(frozen=True)
class CheckinMessage:
    message_type: ClassVar[str] = ""
    udid: str
    topic: str | None
    raw: bytes = field(repr=False)
    plist: dict = field(repr=False)

    @property
    def enrollment_id(self) -> str:
        return self.udid


@dataclass(frozen=True)
class Authenticate(CheckinMessage):
    message_type: ClassVar[str] = "Authenticate"
    serial_number: str | None = None
    product_name: str | None = None
    model: str | None = None
    model_name: str | None = None
    os_version: str | None = None
    build_version: str | None = None
    device_name: str | None = None
    imei: str | None = None
    meid: str | None = None


@dataclass(frozen=True)
class TokenUpdate(CheckinMessage):
    message_type: ClassVar[str] = "TokenUpdate"
    token: bytes = b""
    push_magic: str = ""
    unlock_token: bytes | None = None
    awaiting_configuration: bool = False


@dataclass(frozen=True)
class CheckOut(CheckinMessage):
    message_type: ClassVar[str] = "CheckOut"


@dataclass(frozen=True)
class UserAuthenticate(CheckinMessage):
    message_type: ClassVar[str] = "UserAuthenticate"


@dataclass(frozen=True)
class GetToken(CheckinMessage):
    message_type: ClassVar[str] = "GetToken"


@dataclass(frozen=True)
class DeclarativeManagement(CheckinMessage):
    message_type: ClassVar[str] = "DeclarativeManagement"


@dataclass(frozen=True)
class SetBootstrapToken(CheckinMessage):
    message_type: ClassVar[str] = "SetBootstrapToken"


@dataclass(frozen=True)
class GetBootstrapToken(CheckinMessage):
    message_type: ClassVar[str] = "GetBootstrapToken"


#: longest value a device may send for a field (real ones are far shorter; the server stores no more)
MAX_LENGTHS = {"SerialNumber": 64, "ProductName": 64, "Model": 64, "ModelName": 64, "OSVersion": 32,
               "BuildVersion": 32, "DeviceName": 200, "IMEI": 64, "MEID": 64, "Topic": 255, "PushMagic": 255}


def _str(d: dict, key: str, *, required: bool = False) -> str | None:
    v = d.get(key)
    if v is None:
        if required:
            raise ParseError(f"check-in message lacks {key}")
        return None
    if not isinstance(v, str):
        raise ParseError(f"{key} must be a string")
    if len(v) > MAX_LENGTHS.get(key, len(v)):
        raise ParseError(f"{key} is longer than {MAX_LENGTHS[key]} characters")
    return v


def _data(d: dict, key: str, *, required: bool = False) -> bytes | None:
    v = d.get(key)
    if v is None:
        if required:
            raise ParseError(f"check-in message lacks {key}")
        return None
    if not isinstance(v, bytes):
        raise ParseError(f"{key} must be data")
    return v


def _base(d: dict, raw: bytes) -> dict[str, Any]:
    udid = _str(d, "UDID")
    if not udid:
        if d.get("EnrollmentID") or d.get("UserID"):
            raise UnsupportedMessageType("user enrollment channels are not supported; send the device UDID")
        raise ParseError("check-in message lacks UDID")
    if len(udid) > 64 or not udid.replace("-", "").isalnum():
        raise ParseError("UDID is not a device identifier")
    if "UserID" in d or "EnrollmentUserID" in d:
        raise UnsupportedMessageType("user channel check-ins are not supported")
    return {"udid": udid, "topic": _str(d, "Topic"), "raw": raw, "plist": d}


def _authenticate(d: dict, raw: bytes) -> Authenticate:
    return Authenticate(
        **_base(d, raw),
        serial_number=_str(d, "SerialNumber"),
        product_name=_str(d, "ProductName"),
        model=_str(d, "Model"),
        model_name=_str(d, "ModelName"),
        os_version=_str(d, "OSVersion"),
        build_version=_str(d, "BuildVersion"),
        device_name=_str(d, "DeviceName"),
        imei=_str(d, "IMEI"),
        meid=_str(d, "MEID"),
    )


def _token_update(d: dict, raw: bytes) -> TokenUpdate:
    base = _base(d, raw)
    if not base["topic"]:
        raise ParseError("TokenUpdate lacks Topic")
    token = _data(d, "Token", required=True)
    if not token or len(token) > 256:
        raise ParseError("TokenUpdate Token has an impossible length")
    awaiting = d.get("AwaitingConfiguration", False)
    if not isinstance(awaiting, bool):
        raise ParseError("AwaitingConfiguration must be a boolean")
    return TokenUpdate(
        **base,
        token=token,
        push_magic=_str(d, "PushMagic", required=True) or "",
        unlock_token=_data(d, "UnlockToken"),
        awaiting_configuration=awaiting,
    )


def _simple(cls):
    return lambda d, raw: cls(**_base(d, raw))


_PARSERS = {
    "Authenticate": _authenticate,
    "TokenUpdate": _token_update,
    "CheckOut": _simple(CheckOut),
}
_GONE = {"UserAuthenticate"}
_UNSUPPORTED = {"GetToken", "DeclarativeManagement", "SetBootstrapToken", "GetBootstrapToken"}


def parse_checkin(raw: bytes, **limits: Any) -> CheckinMessage:
    """Parse a check-in body; raise ParseError, UnknownMessageType, Gone or UnsupportedMessageType."""
    d = plist.loads_dict(raw, **limits)
    mt = d.get("MessageType")
    if not isinstance(mt, str) or not mt:
        raise ParseError("check-in message lacks MessageType")
    if mt in _GONE:
        raise Gone(f"{mt} is not served: schoolmdm manages devices, not user channels")
    if mt in _UNSUPPORTED:
        raise UnsupportedMessageType(f"{mt} is not supported by this server yet")
    parser = _PARSERS.get(mt)
    if parser is None:
        raise UnknownMessageType(f"unknown MessageType {mt!r}")
    return parser(d, raw)


def build_checkin(message_type: str, udid: str, **fields: Any) -> bytes:
    """Serialize a check-in message (used by the simulator and tests)."""
    d = {"MessageType": message_type, "UDID": udid}
    d.update({k: v for k, v in fields.items() if v is not None})
    return plist.dumps(d)
