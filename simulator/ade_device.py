"""A virtual iPad powered on for the first time, the ADE way (no person involved).

Setup Assistant asks Apple (here: the mock ADE server's device endpoint) for the cloud
configuration of its serial; if a profile is assigned it POSTs its MachineInfo, signed with
the device identity Apple gave it at the factory (here: issued by a simulated device CA), to
the profile's ``ConfigurationURL``, and installs the enrollment profile that comes back (SCEP,
Authenticate, TokenUpdate with ``AwaitingConfiguration`` when the profile says so). It then
waits in Setup Assistant until the server sends DeviceConfigured.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mdm.ade.machineinfo import CONTENT_TYPE, build_machine_info
from mdm.errors import MDMError
from mdm.pki import Identity, create_ca, issue_identity
from profiles.signing import sign_profile
from simulator.client import DeviceClient, SimulatorError
from simulator.device import VirtualIPad


@dataclass
class DeviceAttestation:
    """The stand-in for Apple's device CA: each virtual iPad gets a factory identity from it."""

    ca: Identity = field(default_factory=lambda: create_ca("Simulated Apple iPhone Device CA", "Simulated Apple"))

    def identity(self, serial: str, key) -> Identity:
        return issue_identity(self.ca, serial, org="Simulated Apple", days=3650, key=key)


async def cloud_configuration(client: DeviceClient, ade_url: str) -> dict:
    """What Apple tells this serial in Setup Assistant (SimulatorError ``status`` 404: no profile)."""
    r = await client._request("cloud-config", "GET",
                              f"{ade_url.rstrip('/')}/_device/cloud-configuration/{client.device.serial}")
    try:
        cfg = r.json()
    except ValueError:
        raise SimulatorError("cloud configuration is not JSON", stage="cloud-config") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("ConfigurationURL"), str):
        raise SimulatorError("cloud configuration lacks a ConfigurationURL", stage="cloud-config")
    return cfg


async def enroll_ade(client: DeviceClient, ade_url: str, attestation: DeviceAttestation) -> VirtualIPad:
    d: VirtualIPad = client.device
    cfg = await cloud_configuration(client, ade_url)
    d.state["awaiting_configuration"] = bool(cfg.get("AwaitDeviceConfigured", False))
    d.state["supervised"] = bool(cfg.get("IsSupervised", False))
    hw = d.hw
    info = build_machine_info(udid=d.udid, serial=d.serial, product=hw.product_name, version=hw.build_version,
                              os_version=hw.os_version, imei=hw.imei, language=cfg.get("Language"))
    body = sign_profile(info, attestation.identity(d.serial, client.keys.next()))
    r = await client._request("machineinfo", "POST", cfg["ConfigurationURL"], content=body,
                              headers={"Content-Type": CONTENT_TYPE})
    try:
        return await client.install_enrollment_profile(r.content)
    except MDMError as e:
        if isinstance(e, SimulatorError):
            raise
        raise SimulatorError(f"ADE enrollment: {e.message}", stage="profile") from None
