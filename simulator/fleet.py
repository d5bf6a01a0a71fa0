"""A fleet of virtual iPads: enroll N of them, then answer pushes from the mock APNs feed.

Each push whose token belongs to a device and whose ``mdm`` value is that device's
PushMagic starts a connect session for it, with bounded concurrency; pushes that
arrive while a device is already in a session are coalesced into one more session.
A device that answered NotNow connects again by itself after ``retry_delay``.
"""

from __future__ import annotations

import asyncio
import inspect
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable

import httpx

from mdm.errors import MDMError
from simulator.client import ClientStats, DeviceClient, LatencyRecorder
from simulator.device import VirtualIPad
from simulator.http import HTTPClient, tls_context
from simulator.inventory import hardware_for, random_serial
from simulator.keypool import DEFAULT_POOL_SIZE, KeyPool, SignatureCache

FEED_WAIT = 20.0
FEED_RETRY = 1.0


def tls_verify(ca_file: str | None, insecure: bool) -> ssl.SSLContext | bool:
    """httpx ``verify`` (the APNs feed): off when ``insecure``, the given CA file, or the system CAs."""
    if insecure:
        return False
    if ca_file:
        return ssl.create_default_context(cafile=str(ca_file))
    return True


class Fleet:
    def __init__(self, *, ca_file: str | None = None, insecure: bool = False, not_now_once: Iterable[str] = (),
                 session_concurrency: int = 32, retry_delay: float | None = 1.0, keys: KeyPool | None = None,
                 key_cache_dir: str | None = None, http: HTTPClient | None = None,
                 timeout: float = 60.0, awaiting_configuration: bool = False,
                 max_connections: int = 32, record_latency: bool = False, signature_cache: int = 8192) -> None:
        """``signature_cache``: how many devices' Idle signatures are kept (the server sees the same
        bytes either way; signing costs the simulator ~0.8 ms of the cores it shares with the server)."""
        self.ca_file, self.insecure = ca_file, insecure
        self.not_now_once = set(not_now_once)
        self.awaiting_configuration = awaiting_configuration
        self.retry_delay = retry_delay
        self.keys = keys or KeyPool(DEFAULT_POOL_SIZE, key_cache_dir)
        self.signatures = SignatureCache(max_entries=signature_cache)
        self.client_stats = ClientStats(latency=LatencyRecorder() if record_latency else None)
        self.counters: Counter[str] = Counter()
        self.devices: dict[str, VirtualIPad] = {}  # by UDID
        self.by_serial: dict[str, VirtualIPad] = {}
        self.clients: dict[str, DeviceClient] = {}  # by UDID
        self.feed_position = 0
        self._by_token: dict[str, str] = {}
        # every device shares one keep-alive connection pool per server (``max_connections``)
        self._own_http = http is None
        self.http = http or HTTPClient(ssl_context=tls_context(ca_file, insecure), max_connections=max_connections,
                                       timeout=timeout)
        self._session_slots = asyncio.Semaphore(session_concurrency)
        self._running: set[str] = set()
        self._pending: set[str] = set()
        self._tasks: set[asyncio.Task] = set()
        self._cpu0, self._wall0 = time.process_time(), time.monotonic()
        self._thread, self._thread_cpu0 = threading.get_ident(), time.thread_time()

    def device(self, udid_or_serial: str) -> VirtualIPad:
        d = self.devices.get(udid_or_serial) or self.by_serial.get(udid_or_serial)
        if d is None:
            raise KeyError(udid_or_serial)
        return d

    def enrolled(self) -> list[VirtualIPad]:
        return [d for d in self.devices.values() if d.enrolled]

    # -- enrollment ---------------------------------------------------------------------
    def add_device(self, serial: str) -> DeviceClient:
        if serial in self.by_serial:
            raise ValueError(f"serial {serial} is already in the fleet")
        d = VirtualIPad(hardware_for(serial), not_now_once=self.not_now_once,
                        awaiting_configuration=self.awaiting_configuration)
        client = DeviceClient(d, self.http, keys=self.keys, signatures=self.signatures, stats=self.client_stats)
        self.devices[d.udid], self.by_serial[serial], self.clients[d.udid] = d, d, client
        self._by_token[d.token.hex()] = d.udid
        return client

    async def enroll_all(self, n: int, server: str, school: str, token: str, concurrency: int = 32,
                         serial_prefix: str | None = None, attempts: int = 3) -> list[VirtualIPad]:
        """Enroll ``n`` new iPads; serials are ``<prefix>0001``... or random Apple-style ones.

        An enrollment the server could not serve (unreachable, 5xx, 429) is tried again from the start,
        as Setup Assistant does, up to ``attempts`` times; a refusal (4xx) is final."""
        if serial_prefix is not None and serial_prefix and not serial_prefix.isalnum():
            raise ValueError("serial_prefix must be alphanumeric")
        width = max(4, len(str(n)))
        serials = [f"{serial_prefix}{i:0{width}d}" if serial_prefix else random_serial() for i in range(1, n + 1)]
        await asyncio.to_thread(self.keys.warm)
        self.signatures.max_entries = max(self.signatures.max_entries, 2 * (len(self.devices) + n))
        clients = [self.add_device(s) for s in serials]
        slots = asyncio.Semaphore(concurrency)

        async def one(client: DeviceClient) -> VirtualIPad | None:
            async with slots:
                for attempt in range(attempts):
                    try:
                        return await client.enroll(server, school, token)
                    except MDMError as e:
                        status = getattr(e, "status", None)
                        if attempt + 1 < attempts and (status is None or status >= 500 or status == 429):
                            self.counters["enroll_retries"] += 1  # Setup Assistant tries again
                            await asyncio.sleep(0.5 * 2 ** attempt)
                            continue
                        self.counters["enroll_failures"] += 1
                        self.client_stats.note_error(getattr(e, "stage", "enroll") or "enroll", str(e))
                        return None

        done = await asyncio.gather(*(one(c) for c in clients))
        return [d for d in done if d is not None]

    async def enroll_ade(self, serials: Iterable[str], mock_ade_url: str, *, attestation=None,
                         concurrency: int = 32) -> list[VirtualIPad]:
        """Power on new iPads the ADE way (``simulator.ade_device``): each asks the mock ADE for its
        assigned profile, POSTs its signed MachineInfo there and enrolls, awaiting configuration."""
        from simulator.ade_device import DeviceAttestation, enroll_ade

        attestation = attestation or DeviceAttestation()
        serials = list(serials)
        await asyncio.to_thread(self.keys.warm)
        self.signatures.max_entries = max(self.signatures.max_entries, 2 * (len(self.devices) + len(serials)))
        clients = [self.add_device(s) for s in serials]
        slots = asyncio.Semaphore(concurrency)

        async def one(client: DeviceClient) -> VirtualIPad | None:
            async with slots:
                try:
                    return await enroll_ade(client, mock_ade_url, attestation)
                except MDMError as e:
                    self.counters["enroll_failures"] += 1
                    self.client_stats.note_error(getattr(e, "stage", "enroll") or "enroll", str(e))
                    return None

        done = await asyncio.gather(*(one(c) for c in clients))
        return [d for d in done if d is not None]

    # -- pushes and sessions --------------------------------------------------------------
    def handle_push(self, push: dict) -> bool:
        """A push from the feed: start (or coalesce) a session if it is for one of ours."""
        self.counters["pushes"] += 1
        udid = self._by_token.get(str(push.get("token", "")).lower())
        if udid is None:
            self.counters["pushes_other"] += 1
            return False
        d = self.devices[udid]
        payload = push.get("payload") or {}
        if not d.enrolled or payload.get("mdm") != d.push_magic or push.get("topic") not in (None, d.topic):
            self.counters["pushes_ignored"] += 1
            return False
        self.counters["pushes_matched"] += 1
        self.wake(udid)
        return True

    def wake(self, udid: str) -> None:
        """Have this device connect (as a push would)."""
        if udid in self._running:
            self._pending.add(udid)
            self.counters["pushes_coalesced"] += 1
            return
        self._running.add(udid)
        task = asyncio.get_running_loop().create_task(self._sessions(udid))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _sessions(self, udid: str) -> None:
        client, d = self.clients[udid], self.devices[udid]
        try:
            while d.enrolled:
                self._pending.discard(udid)
                async with self._session_slots:
                    try:
                        await client.connect_session()
                    except MDMError as e:
                        self.client_stats.session_errors += 1
                        self.client_stats.note_error("connect", str(e))
                    except Exception as e:  # a simulator bug must not take the fleet down
                        self.client_stats.session_errors += 1
                        self.client_stats.note_error("crash", f"{type(e).__name__}: {e}")
                if udid in self._pending:
                    continue
                if d.needs_retry and self.retry_delay is not None:
                    self.counters["notnow_retries"] += 1
                    await asyncio.sleep(self.retry_delay)
                    continue
                return
        finally:
            self._running.discard(udid)
            self._pending.discard(udid)

    async def connect_all(self) -> None:
        """Wake every enrolled device and wait until all sessions are over."""
        for d in self.enrolled():
            self.wake(d.udid)
        await self.drain()

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait for sessions in flight (including ones they trigger); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._tasks:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            await asyncio.wait(set(self._tasks), timeout=left)
        return True

    async def listen(self, apns_feed_url: str, apns_ca: str | None = None, *, wait: float = FEED_WAIT) -> None:
        """Long-poll the mock APNs feed (HTTP/2, TLS) forever; cancel the task to stop."""
        verify = tls_verify(apns_ca or self.ca_file, self.insecure and not apns_ca)
        url = apns_feed_url.rstrip("/") + "/_mock/feed"
        async with httpx.AsyncClient(http2=True, verify=verify, timeout=wait + 15.0) as feed:
            while True:
                try:
                    r = await feed.get(url, params={"after": self.feed_position, "wait": wait})
                    r.raise_for_status()
                    data = r.json()
                    pushes, last = data["pushes"], int(data["last"])
                except (httpx.HTTPError, ValueError, KeyError, TypeError) as e:
                    self.counters["feed_errors"] += 1
                    self.client_stats.note_error("feed", f"{type(e).__name__}: {e}")
                    await asyncio.sleep(FEED_RETRY)
                    continue
                for push in pushes:
                    self.handle_push(push)
                self.feed_position = max(self.feed_position, last)

    async def run(self, n: int, server: str, school: str, token: str, apns_feed: str, *,
                  apns_ca: str | None = None, duration: float | None = None,
                  on_ready: Callable[[Fleet], object] | None = None, concurrency: int = 32,
                  serial_prefix: str | None = None) -> Fleet:
        """Listen to the feed, enroll ``n`` devices, call ``on_ready(fleet)``, then serve pushes
        for ``duration`` seconds (forever when None) and wait for sessions in flight."""
        listener = asyncio.get_running_loop().create_task(self.listen(apns_feed, apns_ca))
        try:
            await self.enroll_all(n, server, school, token, concurrency=concurrency, serial_prefix=serial_prefix)
            if on_ready is not None:
                result = on_ready(self)
                if inspect.isawaitable(result):
                    await result
            await asyncio.wait({listener}, timeout=duration)
            if listener.done():
                listener.result()  # the listener only ends by failing
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
            await self.drain(timeout=30.0)
        return self

    def stats(self) -> dict:
        commands: dict[str, Counter] = {}
        for d in self.devices.values():
            for (rt, status), k in d.commands.items():
                commands.setdefault(rt, Counter())[status] += k
        cs = self.client_stats
        return {
            "devices": len(self.devices),
            "enrolled": sum(d.enrolled for d in self.devices.values()),
            "enroll_failures": self.counters["enroll_failures"],
            "sessions": cs.sessions,
            "session_errors": cs.session_errors,
            "commands": {rt: dict(c) for rt, c in sorted(commands.items())},
            "commands_total": sum(sum(c.values()) for c in commands.values()),
            "double_applications": sum(d.double_applications for d in self.devices.values()),
            "errors": sum(cs.errors.values()),
            "errors_by_stage": dict(cs.errors),
            "error_samples": list(cs.error_samples),
            "http_requests": dict(cs.requests),
            "http_errors": dict(cs.http_errors),
            "pushes": {k: v for k, v in self.counters.items() if k.startswith(("pushes", "notnow", "feed"))},
            "cpu_seconds": round(time.process_time() - self._cpu0, 3),
            # the event loop's thread alone (excludes a server running in the same process)
            "loop_cpu_seconds": (round(time.thread_time() - self._thread_cpu0, 3)
                                 if threading.get_ident() == self._thread else None),
            "wall_seconds": round(time.monotonic() - self._wall0, 3),
            "keys": {"pool": self.keys.size, "generated": self.keys.generated, "loaded": self.keys.loaded},
            "signature_cache": {"hits": self.signatures.hits, "misses": self.signatures.misses},
            **({"latency_ms": cs.latency.summary()} if cs.latency is not None else {}),
        }

    async def aclose(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._own_http:
            await self.http.aclose()


async def run_fleet(devices: int, school: str, server: str, token: str, apns_feed: str,
                    ca_file: str | None = None, insecure: bool = False, duration: float | None = None,
                    not_now_once: Iterable[str] = (), on_ready: Callable[[Fleet], object] | None = None, *,
                    apns_ca: str | None = None, concurrency: int = 32, serial_prefix: str | None = None,
                    key_cache_dir: str | None = None) -> Fleet:
    """What ``schoolmdm simulate`` runs: enroll ``devices`` iPads and answer pushes."""
    fleet = Fleet(ca_file=ca_file, insecure=insecure, not_now_once=not_now_once, key_cache_dir=key_cache_dir)
    try:
        await fleet.run(devices, server, school, token, apns_feed, apns_ca=apns_ca, duration=duration,
                        on_ready=on_ready, concurrency=concurrency, serial_prefix=serial_prefix)
    finally:
        await fleet.aclose()
    return fleet
