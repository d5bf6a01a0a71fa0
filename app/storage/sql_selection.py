"""A DeviceSelection as SQL: the SELECT of the UDIDs it names (for set-based enqueue and resolving)."""

from __future__ import annotations

from typing import Iterator

from sqlalchemy import Select, exists, select

from app.db.models import Device, DeviceProfile
from app.storage.interfaces import DeviceSelection

#: UDIDs per IN list (SQLite allows 32,766 parameters per statement)
UDID_CHUNK = 10_000


def selected_udids(sel: DeviceSelection) -> Iterator[Select]:
    """SELECTs of the selected enrolled devices' UDIDs: one, or one per chunk of a long UDID list."""
    q = select(Device.udid).where(Device.enrollment_state == "enrolled")
    if sel.school_id is not None:
        q = q.where(Device.school_id == sel.school_id)
    if sel.role is not None:
        q = q.where(Device.role == sel.role)
    if sel.lacking is not None:
        identifier, content_hash = sel.lacking
        q = q.where(~exists().where(DeviceProfile.udid == Device.udid, DeviceProfile.identifier == identifier,
                                    DeviceProfile.content_hash == content_hash))
    if sel.udids is None:
        yield q
        return
    udids = tuple(dict.fromkeys(sel.udids))  # a UDID twice in two chunks would be queued twice
    for k in range(0, len(udids), UDID_CHUNK):
        yield q.where(Device.udid.in_(udids[k : k + UDID_CHUNK]))
