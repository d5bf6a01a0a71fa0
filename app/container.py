"""Wires settings, PKI, stores and services together (one per process)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property

from app.db.engine import make_engine, make_sessionmaker
from app.limits import RateLimiter
from app.metrics import Metrics
from app.pki_store import PKI, load_or_create
from app.services.audit import AuditedJobs, AuditLog
from app.services.certauth import DeviceAuthenticator
from app.services.checkin import CheckinService
from app.services.clock import Clock, utcnow
from app.services.commands import CommandService, TargetResolver
from app.services.connect import ConnectService, ResultHandler
from app.services.device_setup import SetupCheckin, SetupConnect, SetupTracker
from app.services.devices import DeviceQueries
from app.services.encryption import EncryptingConnect
from app.services.erase import ErasingConnect
from app.services.enrollment import EnrollmentService
from app.services.events import EventingCheckin, EventingConnect
from app.services.jobs import JobService
from app.services.profiles import ProfileService
from app.services.scep_service import DeviceScepService
from app.settings import Settings
from app.storage.sql_checkin import SQLCheckinStore
from app.storage.sql_inventory import SQLInventoryStore, SQLSchoolStore
from app.storage.sql_pki import SQLCertificateStore, SQLChallengeStore
from app.storage.sql_push import SQLPushQueue
from app.storage.sql_queue import SQLCommandQueue
from app.storage.sql_queue_pg import PGCommandQueue
from app.storage.sql_tokens import SQLTokenStore
from app.storage.sql_webhooks import SQLWebhookStore
from mdm.signature import SignatureVerifier

log = logging.getLogger("schoolmdm")


@dataclass
class Container:
    settings: Settings
    clock: Clock = utcnow

    @cached_property
    def engine(self):
        return make_engine(self.settings.database_url)

    @cached_property
    def sessions(self):
        return make_sessionmaker(self.engine)

    @cached_property
    def pki(self) -> PKI:
        s = self.settings
        ca_files = (s.ca_cert_file, s.ca_key_file) if s.ca_cert_file and s.ca_key_file else None
        push_files = (s.apns_cert_file, s.apns_key_file) if s.apns_cert_file and s.apns_key_file else None
        return load_or_create(s.data_dir, org=s.org_name, public_url=s.public_url,
                              ca_files=ca_files, push_files=push_files, signing_key=s.profile_signing_key)

    @cached_property
    def metrics(self) -> Metrics:
        return Metrics()

    # --- stores
    @cached_property
    def checkin_store(self):
        return SQLCheckinStore(self.sessions)

    @cached_property
    def queue(self):
        if self.engine.dialect.name == "postgresql":
            return PGCommandQueue(self.sessions)  # each step of a device request in one statement
        return SQLCommandQueue(self.sessions)

    @cached_property
    def push_queue(self):
        return SQLPushQueue(self.sessions)

    @cached_property
    def challenges(self):
        return SQLChallengeStore(self.sessions)

    @cached_property
    def certs(self):
        return SQLCertificateStore(self.sessions)

    @cached_property
    def inventory(self):
        return SQLInventoryStore(self.sessions)

    @cached_property
    def schools(self):
        return SQLSchoolStore(self.sessions)

    # --- services
    @cached_property
    def verifier(self) -> SignatureVerifier:
        return SignatureVerifier([self.pki.ca.cert], clock=self.clock)

    @cached_property
    def device_auth(self) -> DeviceAuthenticator:
        return DeviceAuthenticator(self.verifier, self.checkin_store, self.certs)

    @cached_property
    def webhooks(self) -> SQLWebhookStore:
        return SQLWebhookStore(self.sessions)

    @cached_property
    def checkin(self) -> EventingCheckin:
        inner = CheckinService(self.checkin_store, self.certs, clock=self.clock)
        inner = SetupCheckin(inner, self.device_setup)  # ready out of the box (AwaitingConfiguration)
        return EventingCheckin(inner, self.webhooks, clock=self.clock)

    @cached_property
    def connect(self) -> EventingConnect:
        inner = ConnectService(self.queue, ResultHandler(self.inventory), clock=self.clock)
        inner = EncryptingConnect(inner, self.profiles, self.checkin_store, self.certs, self.pki)
        inner = ErasingConnect(inner, self.checkin_store, self.certs, clock=self.clock)
        inner = SetupConnect(inner, self.device_setup)
        return EventingConnect(inner, self.webhooks, self.jobs, clock=self.clock)

    @cached_property
    def commands(self) -> CommandService:
        return CommandService(self.queue, self.push_queue, TargetResolver(self.sessions), clock=self.clock)

    @cached_property
    def enrollment(self) -> EnrollmentService:
        return EnrollmentService(self.settings, self.pki, self.schools, self.challenges, clock=self.clock)

    @cached_property
    def scep(self) -> DeviceScepService:
        return DeviceScepService(self.pki, self.challenges, self.certs, self.inventory,
                                 days=self.settings.device_cert_days, clock=self.clock)

    @cached_property
    def apns_client(self):
        from mdm.push.apns import APNsClient

        s = self.settings
        cert = s.apns_cert_file or self.pki.path("push.pem")
        key = s.apns_key_file or self.pki.path("push.key")
        return APNsClient(s.apns_url, str(cert), str(key),
                          ca_bundle=str(s.apns_ca_file) if s.apns_ca_file else None)

    @cached_property
    def tokens(self):
        return SQLTokenStore(self.sessions)

    @cached_property
    def devices(self) -> DeviceQueries:
        return DeviceQueries(self.sessions)

    @cached_property
    def profiles(self) -> ProfileService:
        return ProfileService(self.sessions, self.pki, self.commands, clock=self.clock,
                              encrypt_secrets=self.settings.encrypt_profiles_with_secrets)

    @cached_property
    def audit(self) -> AuditLog:
        return AuditLog(self.sessions, clock=self.clock)

    @cached_property
    def jobs(self) -> AuditedJobs:
        return AuditedJobs(JobService(self.sessions, self.commands, clock=self.clock), self.audit)

    @cached_property
    def inventory_refresh(self):
        import datetime as dt

        from app.services.scheduler import InventoryRefresh

        return InventoryRefresh(self.sessions, self.commands, clock=self.clock,
                                max_age=dt.timedelta(seconds=self.settings.inventory_max_age_seconds))

    @cached_property
    def blueprints(self):
        from app.services.blueprints import BlueprintService

        return BlueprintService(self.sessions, self.pki, identities=self.issued_identities, clock=self.clock,
                                roster_classes=self.roster_classes.classes_for)

    @cached_property
    def issued_identities(self):
        from app.storage.sql_identities import SQLIdentityStore

        return SQLIdentityStore.for_ca(self.sessions, self.pki.ca)

    @cached_property
    def roster_classes(self):
        from app.services.roster import ClassroomRoster

        return ClassroomRoster(self.sessions)

    @cached_property
    def roster(self):
        from app.services.roster import RosterService

        return RosterService(self.sessions, self.blueprints, self.audit, clock=self.clock)

    @cached_property
    def waves(self):
        from app.services.waves import WaveService

        return WaveService(self.sessions, self.audit, clock=self.clock)

    @cached_property
    def loans(self):
        from app.services.loans import LoanService

        return LoanService(self.sessions, self.jobs, self.audit, clock=self.clock)

    @cached_property
    def blueprint_push(self):
        from app.services.blueprint_push import BlueprintPush

        return BlueprintPush(self.sessions, self.blueprints, self.queue, self.push_queue, clock=self.clock,
                             encrypt_secrets=self.settings.encrypt_profiles_with_secrets)

    @cached_property
    def repush(self):
        import datetime as dt

        from app.services.scheduler import RepushStale

        return RepushStale(self.sessions, self.push_queue, clock=self.clock,
                           after=dt.timedelta(seconds=self.settings.repush_after_seconds))

    @cached_property
    def retention(self):
        from app.services.retention import Retention

        return Retention(self.sessions, command_days=self.settings.command_retention_days,
                         webhook_days=self.settings.webhook_retention_days, clock=self.clock)

    @cached_property
    def device_limiter(self) -> RateLimiter:
        return RateLimiter(self.settings.device_rate_per_second, self.settings.device_rate_burst)

    @cached_property
    def device_threads(self) -> ThreadPoolExecutor:
        """Where device requests run their (blocking) service calls on PostgreSQL (on SQLite they
        run on the event loop): a plain executor. ``run_in_threadpool`` costs ~0.1 ms more per
        request (capacity limiter, run variables, context copy), and every iPad request pays it.
        16 threads: each holds one pooled connection while it runs (the pool keeps 20, see
        ``app.db.engine``), and 16 requests in flight per process keep two cores busy."""
        return ThreadPoolExecutor(max_workers=16, thread_name_prefix="device")

    @cached_property
    def api_limiter(self) -> RateLimiter:
        return RateLimiter(self.settings.token_rate_per_second, self.settings.token_rate_burst)

    # --- Apple School Manager (ADE) and device set-up
    @cached_property
    def ade_store(self):
        from app.storage.sql_ade import SQLADEStore

        return SQLADEStore(self.sessions)

    @cached_property
    def ade_identity(self):
        from app.ade_identity import load_or_create_ade_identity

        return load_or_create_ade_identity(self.settings.data_dir, self.settings.org_name)

    @cached_property
    def ade_sync(self):
        from app.services.ade_sync import ADESync

        return ADESync(self.ade_store, self.schools, self.blueprints, self.settings, self.pki, clock=self.clock)

    @cached_property
    def ade_enrollment(self):
        from app.services.ade_enroll import ADEEnrollment
        from mdm.pki import load_cert

        ca_file = self.settings.ade_device_ca_file
        return ADEEnrollment(self.enrollment, self.ade_store, clock=self.clock,
                             device_ca=load_cert(ca_file.read_bytes()) if ca_file else None)

    @cached_property
    def device_setup(self) -> SetupTracker:
        return SetupTracker(self.sessions, self.blueprint_push, self.commands, self.ade_store, clock=self.clock)

    def close(self) -> None:
        if "device_threads" in self.__dict__:
            self.device_threads.shutdown(wait=True)
        if "engine" in self.__dict__:
            self.engine.dispose()

