"""Enrollment: school tokens, one-time SCEP challenges, the signed enrollment profile."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets

from app.services.clock import Clock, utcnow
from app.settings import Settings
from app.storage.interfaces import ChallengeStore
from mdm import plist
from mdm.enrollment import EnrollmentParams, enrollment_profile
from mdm.errors import EnrollmentError, ValidationFailed
from profiles.signing import sign_profile


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret(nbytes: int = 24) -> str:
    return secrets.token_urlsafe(nbytes)


class EnrollmentService:
    def __init__(self, settings: Settings, pki, schools, challenges: ChallengeStore, *, clock: Clock = utcnow) -> None:
        self.settings = settings
        self.pki = pki
        self.schools = schools
        self.challenges = challenges
        self.clock = clock

    def check_token(self, school_id: str, token: str | None) -> dict:
        school = self.schools.get(school_id)
        if school is None:
            raise EnrollmentError(f"unknown school {school_id!r}")
        if not token:
            raise EnrollmentError("enrollment token missing: add ?token=... from 'schoolmdm enroll-url'")
        if not school["enroll_token_hash"] or not hmac.compare_digest(school["enroll_token_hash"], hash_secret(token)):
            raise EnrollmentError("enrollment token is not valid for this school")
        return school

    def new_challenge(self, school_id: str, serial: str | None) -> str:
        challenge = new_secret(18)
        now = self.clock()
        self.challenges.create(hash_secret(challenge), school_id, serial, now,
                               now + dt.timedelta(seconds=self.settings.challenge_ttl_seconds))
        return challenge

    def profile(self, school_id: str, token: str | None, serial: str | None = None) -> bytes:
        """The signed .mobileconfig for one enrollment (a fresh one-time challenge each time)."""
        if serial is not None and (not serial.isalnum() or len(serial) > 64):
            raise ValidationFailed("serial must be alphanumeric (at most 64 characters)")
        school = self.check_token(school_id, token)
        return self._signed_profile(school_id, school, serial)

    def ade_profile(self, school_id: str, serial: str, ade) -> bytes:
        """The enrollment profile for a device enrolling through ADE: no school token, but
        ``serial`` must be an ADE device assigned to this school (``ade.enrollment_refusal``
        says why not: refused with 403 and that reason)."""
        school = self.schools.get(school_id)
        if school is None:
            raise EnrollmentError(f"unknown school {school_id!r}")
        reason = ade.enrollment_refusal(serial, school_id)
        if reason:
            raise EnrollmentError(reason, details={"serial": serial, "school": school_id})
        return self._signed_profile(school_id, school, serial)

    def _signed_profile(self, school_id: str, school: dict, serial: str | None) -> bytes:
        challenge = self.new_challenge(school_id, serial)
        params = EnrollmentParams(
            org=self.settings.org_name, school_id=school_id, school_name=school["name"],
            server_url=self.settings.server_url, checkin_url=self.settings.checkin_url,
            scep_url=self.settings.scep_url, topic=self.pki.topic, challenge=challenge,
            ca_cert=self.pki.ca.cert, serial=serial,
        )
        return sign_profile(plist.dumps(enrollment_profile(params)), self.pki.signing)
