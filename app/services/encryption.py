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
from profiles.encryption import encrypt_profile, serialized_content
from profiles.signing import sign_profile


class EncryptingConnect:
    def __init__(self, inner, profiles, checkins, certs, pki, *, cache_size: int = 256,
                 cert_cache_size: int = 2_048) -> None:
        self.inner = inner
        self.profiles = profiles
        self.checkins = checkins
        self.certs = certs
        self.pki = pki
        # profile versions are immutable: the parsed profile and its serialized PayloadContent
        self._plists: OrderedDict[int, tuple[dict, bytes]] = OrderedDict()
        self._cache_size = cache_size
        self._certs: OrderedDict[str, x509.Certificate] = OrderedDict()
        self._cert_cache_size = cert_cache_size
        self._lock = threading.Lock()

    def _profile(self, profile_id: int) -> tuple[dict, bytes]:
        p = self._plists.get(profile_id)
        if p is None:
            parsed = plist.loads(self.profiles.plist_of(profile_id))
            p = (parsed, serialized_content(parsed))
            with self._lock:
                self._plists[profile_id] = p
                while len(self._plists) > self._cache_size:
                    self._plists.popitem(last=False)
        return p

    def _device_cert(self, udid: str, auth=None, signer=None) -> x509.Certificate:
        if signer is not None and auth is not None and signer.fingerprint == auth.cert_fingerprint:
            # the certificate the device just signed this request with, which the authenticator
            # matched to the one bound to it: no lookup (in a storm every device is a cache miss)
            return signer.cert
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
        signer = known.pop("signer", None)  # the verified request signer, for this wrapper only
        res = self.inner.process(report, **known)
        nxt = res.next
        if nxt is None or not nxt.encrypt or nxt.profile_id is None:
            return res
        profile, content = self._profile(nxt.profile_id)
        cert = self._device_cert(report.udid, known.get("device"), signer)
        profile = encrypt_profile(profile, cert, serialized=content)
        signed = sign_profile(plist.dumps(profile), self.pki.signing)
        body = plist.dumps({"CommandUUID": nxt.command_uuid,
                            "Command": {"RequestType": "InstallProfile", "Payload": signed}})
        return replace(res, next=replace(nxt, body=body))

    def handle(self, report, **known) -> bytes:
        return self.process(report, **known).body
