"""Per-device profile encryption at delivery, added by wrapping the connect service.

An InstallProfile whose profile carries secrets (Wi-Fi passwords, EAP
credentials, identities) is queued once for many devices; when it is handed to
one device, its PayloadContent is encrypted to that device's identity
certificate (Apple's ``EncryptedPayloadContent``) and the profile is signed.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import replace

from cryptography import x509

from mdm import plist
from mdm.errors import NotEnrolled
from profiles.encryption import encrypt_profile
from profiles.signing import sign_profile


class EncryptingConnect:
    def __init__(self, inner, profiles, checkins, certs, pki, *, cache_size: int = 256,
                 cert_cache_size: int = 2_048) -> None:
        self.inner = inner
        self.profiles = profiles
        self.checkins = checkins
        self.certs = certs
        self.pki = pki
        self._plists: OrderedDict[int, dict] = OrderedDict()  # profile versions are immutable
        self._cache_size = cache_size
        self._certs: OrderedDict[str, x509.Certificate] = OrderedDict()
        self._cert_cache_size = cert_cache_size
        self._lock = threading.Lock()

    def _profile(self, profile_id: int) -> dict:
        p = self._plists.get(profile_id)
        if p is None:
            p = plist.loads(self.profiles.plist_of(profile_id))
            with self._lock:
                self._plists[profile_id] = p
                while len(self._plists) > self._cache_size:
                    self._plists.popitem(last=False)
        return p

    def _device_cert(self, udid: str, auth=None) -> x509.Certificate:
        auth = auth or self.checkins.device_auth(udid)
        fp = auth.cert_fingerprint if auth else None
        cert = self._certs.get(fp) if fp else None  # a fingerprint names one certificate for good
        if cert is None:
            info = self.certs.lookup(fp) if fp else None
            if not info or not info.get("cert_der"):
                raise NotEnrolled("no identity certificate on record to encrypt the profile for this device")
            cert = x509.load_der_x509_certificate(info["cert_der"])
            with self._lock:
                self._certs[fp] = cert
                while len(self._certs) > self._cert_cache_size:
                    self._certs.popitem(last=False)
        return cert

    def process(self, report, **known):
        res = self.inner.process(report, **known)
        nxt = res.next
        if nxt is None or not nxt.encrypt or nxt.profile_id is None:
            return res
        profile = encrypt_profile(self._profile(nxt.profile_id), self._device_cert(report.udid, known.get("device")))
        signed = sign_profile(plist.dumps(profile), self.pki.signing)
        body = plist.dumps({"CommandUUID": nxt.command_uuid,
                            "Command": {"RequestType": "InstallProfile", "Payload": signed}})
        return replace(res, next=replace(nxt, body=body))

    def handle(self, report, **known) -> bytes:
        return self.process(report, **known).body
