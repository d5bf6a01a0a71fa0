"""An acknowledged EraseDevice ends the enrollment, added by wrapping the connect service.

The iPad wipes itself right after acknowledging and never sends CheckOut: the server
marks it unenrolled (history kept), cancels what was still queued, and revokes its
identity certificate so the wiped device's old identity opens nothing.
"""

from __future__ import annotations

import logging
from dataclasses import replace

log = logging.getLogger("schoolmdm.erase")


class ErasingConnect:
    def __init__(self, inner, checkins, certs, *, clock) -> None:
        self.inner = inner
        self.checkins = checkins
        self.certs = certs
        self.clock = clock

    def process(self, report, **known):
        res = self.inner.process(report, **known)
        o = res.outcome
        if res.new_result and o.request_type == "EraseDevice" and o.status == "acknowledged":
            now = self.clock()
            self.checkins.checkout(report.udid, now, event="Erased")
            self.certs.revoke_for_device(report.udid, "erased", now)
            log.info("EraseDevice acknowledged by %s: unenrolled, certificate revoked", report.udid)
            return replace(res, next=None)
        return res

    def handle(self, report, **known) -> bytes:
        return self.process(report, **known).body
