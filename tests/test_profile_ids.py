"""profiles.ids.det_uuid is uuid5 under the fixed namespace: installed profiles keep their UUIDs."""

from __future__ import annotations

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from profiles.ids import NAMESPACE, det_uuid, payload_uuid, profile_uuid


@settings(max_examples=500, deadline=None)
@given(st.lists(st.text(), min_size=1, max_size=5))
def test_det_uuid_is_uuid5_of_the_joined_parts(parts):
    assert det_uuid(*parts) == str(uuid.uuid5(NAMESPACE, "\x1f".join(parts))).upper()


def test_known_values():
    # fixed forever: a change here would make every iPad see new profiles
    assert profile_uuid("Musterstadt", "gy-schiller", "pupil", "wifi") == str(
        uuid.uuid5(NAMESPACE, "profile\x1fMusterstadt\x1fgy-schiller\x1fpupil\x1fwifi")).upper()
    assert payload_uuid("A", "b") == str(uuid.uuid5(NAMESPACE, "payload\x1fA\x1fb")).upper()
