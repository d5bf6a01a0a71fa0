"""SQL stores for what we know about devices: inventory, installed profiles, schools."""

from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import bindparam, delete, func, insert, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from app.db.models import Command, Device, DeviceApp, DeviceItem, DeviceProfile, IssuedCertificate, Profile, School
from app.storage.sql_base import SQLStore, dumps_json
from app.storage.sql_raw import RawStatement, raw_tx

# every device acknowledges what it is sent: statements built once, run on the DB-API connection
_PROFILE_COLUMNS = ("content_hash", "payload_uuid", "display_name", "source", "updated_at")


def profile_acknowledged_insert(insert_for_dialect, udid, at, acknowledged):
    """The profile of the acknowledged command (``acknowledged``: its uuid, a value or a scalar
    subquery) becomes the device's version of it: INSERT ... SELECT ... ON CONFLICT DO UPDATE
    (SQLite and PostgreSQL spell it the same way). The PostgreSQL queue (``sql_queue_pg``) runs it
    inside the statement that records the report."""
    ins = insert_for_dialect(DeviceProfile).from_select(
        ["udid", "identifier", *_PROFILE_COLUMNS],
        select(udid, Profile.identifier, Profile.content_hash, Profile.payload_uuid, Profile.name,
               literal("acknowledged", DeviceProfile.source.type), at)
        .join(Command, Command.profile_id == Profile.id).where(Command.uuid == acknowledged))
    return ins.on_conflict_do_update(index_elements=[DeviceProfile.udid, DeviceProfile.identifier],
                                     set_={k: ins.excluded[k] for k in _PROFILE_COLUMNS})


def _profile_acknowledged(insert_for_dialect):
    return RawStatement(profile_acknowledged_insert(
        insert_for_dialect, bindparam("udid", type_=DeviceProfile.udid.type),
        bindparam("at", type_=DeviceProfile.updated_at.type), bindparam("cu", type_=Command.uuid.type)))


_PROFILE_ACKNOWLEDGED = {"sqlite": _profile_acknowledged(sqlite_insert),
                         "postgresql": _profile_acknowledged(pg_insert)}
_INFO_COLUMNS = (("DeviceName", "device_name"), ("OSVersion", "os_version"), ("BuildVersion", "build_version"),
                 ("ProductName", "product_name"), ("ModelName", "model_name"), ("SerialNumber", "serial"))


def save_info_update(*where, **also):
    """DeviceInformation's answer into the device's row (``device_information_values`` are its
    parameters; ``also``: more columns to set). The PostgreSQL queue (``sql_queue_pg``) runs it
    inside the statement that records the report."""
    return update(Device).where(*where).values(
        inventory=bindparam("inventory"), inventory_at=bindparam("at"),
        **{col: func.coalesce(bindparam(col, type_=Device.__table__.c[col].type), Device.__table__.c[col])
           for _, col in _INFO_COLUMNS}, **also)


def device_information_values(info: dict) -> dict:
    """The parameters of ``save_info_update`` (a key the device did not send, or sent too long,
    keeps what we had)."""
    values = {"inventory": dumps_json(info)}
    for key, col in _INFO_COLUMNS:
        values[col] = info[key] if _fits(info.get(key), Device, col) else None
    return values


_SAVE_INFO = RawStatement(save_info_update(Device.udid == bindparam("device")))


class SQLInventoryStore(SQLStore):
    def save_device_information(self, udid: str, info: dict, now: dt.datetime) -> None:
        """DeviceInformation's answer: the whole answer, and the columns the support desk searches
        (a key the device did not send, or sent too long, keeps what we had)."""
        values = {"device": udid, "at": now, **device_information_values(info)}
        with raw_tx(self.engine) as c:
            c.run(_SAVE_INFO, values)

    def replace_profile_list(self, udid: str, items: list[dict], now: dt.datetime) -> None:
        with self.tx() as s:
            known = {
                r.identifier: r.content_hash
                for r in s.execute(select(DeviceProfile).where(DeviceProfile.udid == udid)).scalars()
            }
            s.execute(delete(DeviceProfile).where(DeviceProfile.udid == udid))
            rows = {}  # one row per identifier, as the table's key says (a device may list one twice)
            for it in items:
                ident = it.get("PayloadIdentifier")
                if not _fits(ident, DeviceProfile, "identifier"):
                    continue
                rows[ident] = {"udid": udid, "identifier": ident, "content_hash": known.get(ident),
                               "payload_uuid": _fit(it.get("PayloadUUID"), DeviceProfile, "payload_uuid"),
                               "display_name": _fit(it.get("PayloadDisplayName"), DeviceProfile, "display_name"),
                               "source": "ProfileList", "updated_at": now}
            if rows:
                s.execute(insert(DeviceProfile), list(rows.values()))

    def profile_acknowledged(self, udid: str, command_uuid: str, now: dt.datetime) -> None:
        """An InstallProfile was acknowledged: remember which version is on the device.

        (Every device acknowledges every pushed profile: the statements run on the DB-API connection.)"""
        with raw_tx(self.engine) as c:
            c.run(_PROFILE_ACKNOWLEDGED[self.dialect], {"udid": udid, "cu": command_uuid, "at": now})

    def profile_removed(self, udid: str, identifier: str) -> None:
        with self.tx() as s:
            s.execute(delete(DeviceProfile).where(DeviceProfile.udid == udid, DeviceProfile.identifier == identifier))

    def replace_apps(self, udid: str, items: list[dict], now: dt.datetime) -> None:
        """InstalledApplicationList: what is on the device now."""
        rows = {}
        for it in items:
            ident = it.get("Identifier")
            if ident and _fits(ident, DeviceApp, "identifier"):
                rows[ident] = {"udid": udid, "identifier": ident, "name": _fit(it.get("Name"), DeviceApp, "name"),
                               "version": _fit(it.get("ShortVersion") or it.get("Version"), DeviceApp, "version"),
                               "managed": bool(it.get("IsManaged", False)) if isinstance(it.get("IsManaged"), bool)
                               else False, "source": "InstalledApplicationList", "updated_at": now}
        with self.tx() as s:
            managed = set(s.execute(select(DeviceApp.identifier).where(DeviceApp.udid == udid,
                                                                       DeviceApp.managed.is_(True))).scalars())
            s.execute(delete(DeviceApp).where(DeviceApp.udid == udid))
            for ident in managed & rows.keys():
                rows[ident]["managed"] = True
            if rows:
                s.execute(insert(DeviceApp), list(rows.values()))

    def app_installed(self, udid: str, identifier: str, now: dt.datetime) -> None:
        if not _fits(identifier, DeviceApp, "identifier"):
            return
        with self.tx() as s:
            s.execute(delete(DeviceApp).where(DeviceApp.udid == udid, DeviceApp.identifier == identifier))
            s.execute(insert(DeviceApp).values(udid=udid, identifier=identifier, managed=True,
                                               source="InstallApplication", updated_at=now))

    def app_removed(self, udid: str, identifier: str) -> None:
        with self.tx() as s:
            s.execute(delete(DeviceApp).where(DeviceApp.udid == udid, DeviceApp.identifier == identifier))

    def item_applied(self, udid: str, key: str, content_hash: str | None, now: dt.datetime,
                     detail: str | None = None) -> None:
        """A blueprint item was acknowledged (``app:-`` removal items delete the install record)."""
        with self.tx() as s:
            if key.startswith("app-removed:"):
                s.execute(delete(DeviceItem).where(DeviceItem.udid == udid,
                                                   DeviceItem.key == "app:" + key[len("app-removed:"):]))
                return
            s.execute(delete(DeviceItem).where(DeviceItem.udid == udid, DeviceItem.key == key))
            s.execute(insert(DeviceItem).values(udid=udid, key=key, content_hash=content_hash or "",
                                                detail=_fit(detail, DeviceItem, "detail"), updated_at=now))

    def command_body(self, command_uuid: str) -> bytes | None:
        with self.tx() as s:
            return s.execute(select(Command.body).where(Command.uuid == command_uuid)).scalar()

    def rebind_certificate(self, old_fp: str, new_fp: str) -> str | None:
        """After a SCEP renewal: the device now signs with its new certificate."""
        with self.tx() as s:
            udid = s.execute(select(Device.udid).where(Device.cert_fingerprint == old_fp)).scalar()
            if udid is None:
                return None
            s.execute(update(Device).where(Device.udid == udid).values(cert_fingerprint=new_fp))
            s.execute(update(IssuedCertificate).where(IssuedCertificate.fingerprint == new_fp).values(udid=udid))
            return udid


class SQLSchoolStore(SQLStore):
    def upsert(self, school_id: str, name: str, token_hash: str | None, now: dt.datetime) -> bool:
        """Create or rename a school; returns True when created."""
        with self.tx() as s:
            sc = s.get(School, school_id)
            if sc is None:
                s.add(School(id=school_id, name=name, enroll_token_hash=token_hash or "", created_at=now))
                return True
            sc.name = name
            if token_hash:
                sc.enroll_token_hash = token_hash
            return False

    def get(self, school_id: str) -> dict | None:
        with self.tx() as s:
            sc = s.get(School, school_id)
            return None if sc is None else {"id": sc.id, "name": sc.name, "enroll_token_hash": sc.enroll_token_hash}

    def list(self) -> list[dict]:
        with self.tx() as s:
            return [{"id": sc.id, "name": sc.name} for sc in s.execute(select(School).order_by(School.id)).scalars()]


def _fits(v, model, column: str) -> bool:
    """A string the column can hold (devices send what they like; PostgreSQL refuses what is too long)."""
    return isinstance(v, str) and len(v) <= model.__table__.c[column].type.length


def _fit(v, model, column: str) -> str | None:
    return v if _fits(v, model, column) else None


def loads_json(text: str | None):
    return json.loads(text) if text else None
