"""``com.apple.wifi.managed``: WPA2/WPA3 personal, WPA2-Enterprise (EAP-TLS, PEAP), open.

Enterprise networks bring their RADIUS server's CA as ``com.apple.security.root``
(or ``.pkcs1`` for an intermediate) referenced by ``PayloadCertificateAnchorUUID``;
EAP-TLS also needs a client identity (``com.apple.security.pkcs12``) referenced
by ``PayloadCertificateUUID``.
"""

from __future__ import annotations

from collections.abc import Sequence

from profiles.blueprint.sections import Proxy, WifiNetwork
from profiles.ids import slug
from profiles.payloads.common import Namer, certificate_key, payload

PAYLOAD_TYPE = "com.apple.wifi.managed"
EAP_TYPES = {"EAP-TLS": 13, "PEAP": 25}
ENCRYPTION = {"WPA2": "WPA2", "WPA3": "WPA3", "WPA2-Enterprise": "WPA2", "None": "None"}


def proxy_keys(proxy: Proxy | None) -> dict:
    if proxy is None:
        return {}
    if proxy.mode == "manual":
        return {"ProxyType": "Manual", "ProxyServer": proxy.server, "ProxyServerPort": proxy.port}
    keys: dict = {"ProxyType": "Auto"}
    if proxy.pac_url:
        keys["ProxyPACURL"] = proxy.pac_url
    return keys


def wifi_key(ssid: str) -> str:
    return f"wifi-{slug(ssid)}"


def wifi_payload(namer: Namer, net: WifiNetwork, *, anchor_ders: Sequence[bytes] = (),
                 identity_uuid: str | None = None) -> dict:
    """One network. ``anchor_ders``: the CA certificates (already in the profile) to trust;
    ``identity_uuid``: the PKCS#12 payload EAP-TLS authenticates with."""
    content: dict = {
        "SSID_STR": net.ssid,
        "HIDDEN_NETWORK": net.hidden,
        "AutoJoin": net.auto_join,
        "EncryptionType": ENCRYPTION[net.security],
    }
    if net.password:
        content["Password"] = net.password
    content.update(proxy_keys(net.proxy))
    if net.eap is not None:
        eap = net.eap
        cfg: dict = {"AcceptEAPTypes": [EAP_TYPES[eap.method]]}
        if eap.username:
            cfg["UserName"] = eap.username
        if eap.password:
            cfg["UserPassword"] = eap.password
        if eap.outer_identity:
            cfg["OuterIdentity"] = eap.outer_identity
        if eap.trusted_server_names:
            cfg["TLSTrustedServerNames"] = list(eap.trusted_server_names)
        if anchor_ders:
            cfg["PayloadCertificateAnchorUUID"] = [namer.uuid_for(certificate_key(d)) for d in anchor_ders]
        content["EAPClientConfiguration"] = cfg
        if eap.method == "EAP-TLS":
            if identity_uuid is None:
                raise ValueError(f"EAP-TLS network {net.ssid!r} needs a client identity")
            content["PayloadCertificateUUID"] = identity_uuid
    return payload(namer, wifi_key(net.ssid), PAYLOAD_TYPE, f"Wi-Fi {net.ssid}", content)
