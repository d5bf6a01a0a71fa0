"""ADE sync: Apple School Manager's devices into ``ade_devices``, one enrollment profile per
school defined at Apple, and every device assigned its school's profile.

A run: a full fetch when there is no cursor yet (resumed from the stored cursor after a
failure), then sync from the cursor; each page is stored with its cursor in one transaction.
An expired or invalid cursor starts a full fetch again. Then the serial -> school rules are
applied, profiles (re)defined where the school's definition changed, and pending devices
assigned. Runs on a schedule (``app.background``) and on demand (``schoolmdm ade sync``);
one at a time per process, and across instances through a PostgreSQL advisory lock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import text

from app.services.ade_profile import ade_profile, content_hash
from app.services.clock import Clock, utcnow
from app.services.scheduler import lock_key
from app.storage.sql_ade import SQLADEStore
from mdm.ade.client import ADEClient
from mdm.ade.errors import ADECursorError, ADEError
from mdm.ade.token import ServerToken, decrypt_server_token
from mdm.errors import Conflict, MDMError, NotFound

log = logging.getLogger("schoolmdm.ade")


class ADESync:
    def __init__(self, store: SQLADEStore, schools, blueprints, settings, pki, *,
                 client_factory: Callable[[ServerToken], ADEClient] | None = None, clock: Clock = utcnow,
                 page_size: int = 1000) -> None:
        self.store = store
        self.schools = schools
        self.blueprints = blueprints
        self.settings = settings
        self.pki = pki
        self.client_factory = client_factory or self._client
        self.clock = clock
        self.page_size = page_size
        self._local = threading.Lock()

    def _client(self, token: ServerToken) -> ADEClient:
        s = self.settings
        return ADEClient(token, s.ade_url, verify=str(s.ade_ca_file) if s.ade_ca_file else True)

    @contextmanager
    def _exclusive(self) -> Iterator[bool]:
        """One sync at a time: a process lock, and on PostgreSQL a session advisory lock held on a
        connection outside any transaction (no transaction spans Apple's answers)."""
        if not self._local.acquire(blocking=False):
            yield False
            return
        try:
            engine = self.store.sessions.kw["bind"]
            if engine.dialect.name != "postgresql":
                yield True
                return
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": lock_key("ade-sync")}).scalar()
                try:
                    yield bool(got)
                finally:
                    if got:
                        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": lock_key("ade-sync")})
        finally:
            self._local.release()

    def install_token(self, p7m: bytes, identity, *, actor: str, check: bool = True) -> dict:
        """Decrypt a server token with the ADE identity, ask Apple who it is for (unless
        ``check`` is off) and store it; returns what is safe to show (never a secret)."""
        token = decrypt_server_token(p7m, identity.key, identity.cert)
        account: dict = {}
        if check:
            with self.client_factory(token) as client:
                account = client.account()
        self.store.save_token(token, account, self.clock(), actor)
        log.info("ADE server token installed by %s (server %s, expires %s)", actor, account.get("server_name"),
                 token.access_token_expiry)
        return self.store.config() or {}

    def run(self) -> dict:
        """Sync now; raises NotFound without a token, Conflict when a sync is already running."""
        token = self.store.token()
        if token is None:
            raise NotFound("no ADE server token: run 'schoolmdm ade token FILE.p7m' first")
        with self._exclusive() as mine:
            if not mine:
                raise Conflict("an ADE sync is already running")
            return self._run(token)

    def run_scheduled(self) -> dict | None:
        """For the background task: nothing without a token or while another instance syncs."""
        token = self.store.token()
        if token is None:
            return None
        with self._exclusive() as mine:
            return self._run(token) if mine else None

    def _run(self, token: ServerToken) -> dict:
        summary: dict = {"fetched": 0, "added": 0, "modified": 0, "deleted": 0, "cursor_reset": False,
                         "profiles_defined": [], "assigned": 0, "not_assigned": {}}
        try:
            with self.client_factory(token) as client:
                self._devices(client, summary)
                summary.update(self.store.apply_rules(self.clock()))
                self._profiles(client, summary)
                self._assign(client, summary)
        except MDMError as e:
            self.store.record_run(self.clock(), f"{type(e).__name__}: {e.message}")
            log.warning("ADE sync failed: %s", e.message)
            raise
        self.store.record_run(self.clock(), None)
        log.info("ADE sync: %d fetched, +%d ~%d -%d, %d assigned, profiles defined for %s", summary["fetched"],
                 summary["added"], summary["modified"], summary["deleted"], summary["assigned"],
                 summary["profiles_defined"] or "none")
        return summary

    # -- devices ------------------------------------------------------------------------------
    def _pages(self, client: ADEClient, kind: str, cursor: str | None, summary: dict) -> None:
        for page in client.pages(kind, cursor, self.page_size):
            done = not page.more_to_follow
            phase = "sync" if kind == "sync" or done else "fetch"
            counts = self.store.save_page(page.devices, page.cursor or cursor, phase, self.clock(),
                                          fetch_complete=kind == "fetch" and done)
            cursor = page.cursor or cursor
            if kind == "fetch":
                summary["fetched"] += len(page.devices)
            for k, n in counts.items():
                summary[k] += n

    def _devices(self, client: ADEClient, summary: dict) -> None:
        phase, cursor = self.store.cursor()
        for attempt in range(2):
            try:
                if phase != "sync":
                    self._pages(client, "fetch", cursor if phase == "fetch" else None, summary)
                    phase, cursor = self.store.cursor()
                self._pages(client, "sync", cursor, summary)
                return
            except ADECursorError as e:
                if attempt:
                    raise
                log.info("ADE cursor refused (%s): fetching every device again", e.reason)
                self.store.reset_cursor()
                summary["cursor_reset"] = True
                phase, cursor = None, None

    # -- profiles and assignments -------------------------------------------------------------
    def definition(self, school_id: str) -> dict:
        """The ADE profile this school should have now."""
        school = self.schools.get(school_id)
        if school is None:
            raise NotFound(f"unknown school {school_id!r}")
        try:
            _, bp = self.blueprints.blueprint(school_id)
            locale = bp.settings
        except NotFound:
            locale = None  # no blueprint yet: the blueprint defaults (de / DE)
        return ade_profile(self.settings, self.pki, school_id, school["name"], locale)

    def _profiles(self, client: ADEClient, summary: dict) -> None:
        for school_id in self.store.schools_with_devices():
            want = self.definition(school_id)
            digest = content_hash(want)
            have = self.store.profile(school_id)
            if have is not None and have["content_hash"] == digest:
                continue
            uuid = client.define_profile(want)
            self.store.save_profile(school_id, uuid, digest, want, self.clock())
            summary["profiles_defined"].append(school_id)

    def _assign(self, client: ADEClient, summary: dict) -> None:
        for profile_uuid, serials in self.store.pending_assignments().items():
            for k in range(0, len(serials), 1000):
                chunk = serials[k:k + 1000]
                try:
                    results = client.assign_profile(profile_uuid, chunk)
                except ADEError as e:
                    if e.reason != "PROFILE_NOT_FOUND":
                        raise
                    self.store.forget_profile(profile_uuid)  # Apple lost it: defined again next run
                    break
                results.update({s: "FAILED" for s in chunk if s not in results})
                self.store.record_assignments(profile_uuid, results, self.clock())
                summary["assigned"] += sum(v == "SUCCESS" for v in results.values())
                summary["not_assigned"].update({s: v for s, v in results.items() if v != "SUCCESS"})
