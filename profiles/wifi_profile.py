"""The smallest useful profile: one WPA2 network for a school (first end-to-end test)."""

from __future__ import annotations

from profiles.blueprint.sections import WifiNetwork
from profiles.ids import profile_identifier, profile_uuid
from profiles.payloads.common import Namer
from profiles.payloads.wifi import wifi_payload
from profiles.profile import configuration_profile


def wifi_psk_profile(school_id: str, org: str, ssid: str, password: str, *,
                     prefix: str = "org.schoolmdm", role: str = "pupil") -> dict:
    """A Configuration profile with one WPA2-Personal network; ids derived from the arguments."""
    identifier = profile_identifier(prefix, school_id, role, "wifi")
    uuid = profile_uuid(org, school_id, role, "wifi")
    net = WifiNetwork(ssid=ssid, security="WPA2", password=password)
    return configuration_profile(
        identifier=identifier, uuid=uuid, display_name=f"Wi-Fi {ssid}", organisation=org,
        content=[wifi_payload(Namer(identifier, uuid), net)], removal_disallowed=False)
