"""The measured phases of ``bench/storm.py``: enrollment, the storm, the steady state.

Each takes the ``StormBench`` (``b``: URLs, tokens, timeouts, ``result`` to fill,
``cpu_now``/``cpu_phase``/``phase``), the fleet and an API client, and raises
``BenchError`` when a target is not reached.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter, deque

import httpx

from _procs import BenchError, wait_until
from mdm.errors import MDMError
from simulator.fleet import Fleet

SCHOOL = "bench-gs"
POLL = 0.5  # job polling interval during a storm (seconds)
ENROLL_RETRIES = 2  # further attempts for iPads whose enrollment failed (counted as errors all the same)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BenchFleet(Fleet):
    """A fleet that notes when pushes for its devices arrive from the mock's feed."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.feed_first: float | None = None
        self.feed_last: float | None = None
        self.feed_matched = 0

    def handle_push(self, push: dict) -> bool:
        matched = super().handle_push(push)
        if matched:
            now = time.perf_counter()
            self.feed_first = self.feed_first if self.feed_first is not None else now
            self.feed_last = now
            self.feed_matched += 1
        return matched


async def finished_job(api: httpx.AsyncClient, job_id: str, timeout: float, what: str) -> dict:
    """Poll ``GET /api/v1/jobs/{id}`` until the job is no longer running."""
    deadline = time.perf_counter() + timeout
    while True:
        r = await api.get(f"/api/v1/jobs/{job_id}")
        if r.status_code != 200:
            raise BenchError(f"GET /api/v1/jobs/{job_id} answered {r.status_code}: {r.text[:200]}")
        job = r.json()
        if job["state"] != "running":
            return job
        if time.perf_counter() > deadline:
            raise BenchError(f"{what}: not reached within {timeout:.0f} s (counts {job['counts']})")
        await asyncio.sleep(POLL)


async def enroll(b, fleet: BenchFleet) -> None:
    """Enroll ``b.n`` iPads over HTTPS + SCEP; failed ones try again (their errors still count)."""
    n = b.n
    await asyncio.to_thread(fleet.keys.warm)  # the cache makes this instant after the first run
    log(f"enrolling {n:,} iPads (concurrency {b.concurrency}) ...")
    lat = fleet.client_stats.latency
    assert lat is not None
    lat.reset()
    b.phase("enroll")
    t0 = time.perf_counter()
    task = asyncio.ensure_future(fleet.enroll_all(n, b.server_url, SCHOOL, b.enroll_token,
                                                  concurrency=b.concurrency, serial_prefix="STORM"))
    deadline = t0 + b.enroll_timeout
    while not task.done():
        await asyncio.wait({task}, timeout=10)
        if task.done():
            break
        done = lat.samples.get("PUT /mdm/checkin")
        k = len(done) // 2 if done is not None else 0
        log(f"  enrolled ~{k:,}/{n:,} ({k / (time.perf_counter() - t0):.1f}/s)")
        if time.perf_counter() > deadline:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise BenchError(f"enrollment: not all {n:,} iPads enrolled within {b.enroll_timeout:.0f} s "
                             f"(~{k:,} did; --enroll-timeout)")
    task.result()
    failed = [c for c in fleet.clients.values() if not c.device.enrolled]
    retried = len(failed)
    for attempt in range(ENROLL_RETRIES):  # an iPad whose enrollment failed tries again
        if not failed or time.perf_counter() > deadline:
            break
        log(f"  {len(failed):,} enrollments failed; retrying them (attempt {attempt + 1}) ...")
        await asyncio.sleep(1.0)
        slots = asyncio.Semaphore(b.concurrency)

        async def again(client) -> None:
            async with slots:
                try:
                    await client.enroll(b.server_url, SCHOOL, b.enroll_token)
                except MDMError as e:
                    fleet.client_stats.note_error(getattr(e, "stage", "enroll") or "enroll", str(e))

        try:
            await asyncio.wait_for(asyncio.gather(*(again(c) for c in failed)),
                                   max(1.0, deadline - time.perf_counter()))
        except TimeoutError:
            break
        failed = [c for c in failed if not c.device.enrolled]
    wall = time.perf_counter() - t0
    enrolled = len(fleet.enrolled())
    cs = fleet.client_stats
    b.result["enroll"] = {
        "devices": n, "enrolled": enrolled, "seconds": round(wall, 2), "per_second": round(enrolled / wall, 1),
        "latency_ms": lat.summary()["all"], "errors": sum(cs.errors.values()), "errors_by_stage": dict(cs.errors),
        "http_errors": dict(cs.http_errors), "retried": retried, "error_samples": list(cs.error_samples)}
    log(f"enrolled {enrolled:,} in {wall:.1f} s ({enrolled / wall:.1f}/s)"
        + (f"; {retried:,} needed another attempt ({sum(cs.errors.values()):,} errors)" if retried else ""))
    if enrolled < n:
        hint = ""
        if b.db is not None and b.db.kind == "postgres" and any("503" in k for k in cs.http_errors):
            hint = f" ({b.db.connection_hint()})"
        raise BenchError(f"enrollment: only {enrolled:,} of {n:,} iPads enrolled; "
                         f"errors {dict(cs.errors)}; e.g. {list(cs.error_samples)[-3:]}{hint}")

def error_snapshot(fleet: BenchFleet) -> tuple[Counter, Counter, list]:
    cs = fleet.client_stats
    return Counter(cs.errors), Counter(cs.http_errors), list(cs.error_samples)

def errors_since(fleet: BenchFleet, snap: tuple[Counter, Counter, list]) -> dict:
    cs = fleet.client_stats
    errors, http = Counter(cs.errors), Counter(cs.http_errors)
    errors.subtract(snap[0])
    http.subtract(snap[1])
    errors, http = +errors, +http
    non_2xx = sum(v for k, v in http.items() if k.rsplit(" ", 1)[-1].isdigit())
    return {"simulator": sum(errors.values()), "non_2xx": non_2xx, "by_stage": dict(errors),
            "http": dict(http), "samples": [s for s in cs.error_samples if s not in snap[2]][-10:]}

async def storm(b, fleet: BenchFleet, api: httpx.AsyncClient) -> None:
    """One signed profile to every iPad through the API; wait until every InstallProfile is acknowledged."""
    n, lat, mock = b.n, fleet.client_stats.latency, b.mock_stats
    assert lat is not None and mock is not None
    ident = b.profile_payload["PayloadIdentifier"]
    base = await asyncio.to_thread(mock.accepted)
    mock.track(base, n)
    errs0 = error_snapshot(fleet)
    lat.reset()
    cpu0 = b.cpu_now()
    b.phase("storm")
    log(f"storm: queueing InstallProfile for {n:,} iPads through the API ...")
    t0 = time.perf_counter()
    r = await api.post(f"/api/v1/profiles/{b.profile.id}/push", json={})
    enqueue = time.perf_counter() - t0
    if r.status_code != 202:
        raise BenchError(f"bulk enqueue: POST /api/v1/profiles/{b.profile.id}/push answered "
                         f"{r.status_code} after {enqueue:.1f} s: {r.text[:300]}")
    body = r.json()
    job_id, queued = body["job"]["id"], body["queued"]
    s = b.result["storm"] = {"enqueue_seconds": round(enqueue, 3), "queued": queued, "job_id": job_id}
    log(f"  enqueued {queued:,} in {enqueue:.2f} s (job {job_id})")
    if queued != n:
        raise BenchError(f"bulk enqueue: {queued:,} queued, expected {n:,}")

    deadline, last_log = t0 + b.storm_timeout, time.perf_counter()
    while True:
        await asyncio.sleep(POLL)
        jr = await api.get(f"/api/v1/jobs/{job_id}")
        if jr.status_code != 200:
            raise BenchError(f"GET /api/v1/jobs/{job_id} answered {jr.status_code}: {jr.text[:200]}")
        job = jr.json()
        counts, now = job["counts"], time.perf_counter()
        if counts["acknowledged"] >= n:
            observed, last_end, requests = now, lat.last_end, lat.count
            latency = lat.summary()
            break
        if job["state"] != "running":
            raise BenchError(f"storm: job {job_id} ended with {counts} (expected {n:,} acknowledged)")
        if now > deadline:
            raise BenchError(f"storm: {counts['acknowledged']:,} of {n:,} acknowledged after "
                             f"{b.storm_timeout:.0f} s (counts {counts}; --storm-timeout)")
        if now - last_log >= 10:
            last_log = now
            log(f"  {counts['acknowledged']:,}/{n:,} acknowledged after {now - t0:.0f} s "
                f"(pushes seen by the fleet {fleet.feed_matched:,})")
    wall = (last_end or observed) - t0
    b.phase("after")
    cpu1 = b.cpu_now()
    b.cpu_phase("storm", cpu0, cpu1, wall)
    await asyncio.to_thread(wait_until, mock.done, 15, "mock APNs to count every push", interval=0.05)
    mock_after = await asyncio.to_thread(mock.fetch)
    await fleet.drain(timeout=30)
    feed_window = (fleet.feed_last - fleet.feed_first) if fleet.feed_first is not None else None
    stats = fleet.stats()
    installed = sum(1 for d in fleet.enrolled() if ident in d.profiles)
    errors = errors_since(fleet, errs0)
    errors["job_failed"] = counts["error"] + counts.get("expired", 0)
    s.update({
        "push_fanout": {
            "mock": mock.fan_out(n),
            "feed": {"pushes": fleet.feed_matched,
                     "seconds": round(feed_window, 3) if feed_window is not None else None,
                     "per_second": round(fleet.feed_matched / feed_window, 1) if feed_window else None},
            "mock_counts": mock_after.get("counts", {}),
        },
        "wall_seconds": round(wall, 3), "job_observed_seconds": round(observed - t0, 3),
        "acknowledged": counts["acknowledged"], "acknowledged_per_second": round(n / wall, 1),
        "device_requests": requests, "device_requests_per_second": round(requests / wall, 1),
        "latency_ms": latency, "errors": errors,
        "double_applications": stats["double_applications"], "profiles_installed": installed,
        "fleet_pushes": stats["pushes"], "sessions": stats["sessions"],
    })
    log(f"storm: all {n:,} acknowledged in {wall:.2f} s")
    if stats["double_applications"]:
        raise BenchError(f"double_applications = {stats['double_applications']} (must be 0)")
    if installed != n:
        raise BenchError(f"only {installed:,} of {n:,} iPads hold the profile")
    if errors["simulator"] or errors["non_2xx"] or errors["job_failed"]:
        raise BenchError(f"storm errors: {errors['by_stage']} {errors['http']} e.g. {errors['samples'][-3:]}")

async def steady(b, fleet: BenchFleet, api: httpx.AsyncClient) -> None:
    """Idle check-ins with an empty queue for ``--duration`` s, then one DeviceInformation round trip each."""
    n, lat, k = b.n, fleet.client_stats.latency, b.concurrency
    assert lat is not None
    clients = [fleet.clients[d.udid] for d in fleet.enrolled()]
    if len(clients) < k:
        raise BenchError(f"steady mode needs at least --concurrency ({k}) devices")
    errs0 = error_snapshot(fleet)
    st = b.result["steady"] = {}
    failures: list[str] = []

    async def session(client) -> int | None:
        try:
            return await client.connect_session()
        except MDMError as e:
            fleet.client_stats.session_errors += 1
            fleet.client_stats.note_error("connect", str(e))
            failures.append(str(e))
            return None

    # idle check-ins: Idle with an empty queue, k at a time, for a fixed duration
    duration = b.args.duration
    log(f"steady: {k} clients sending Idle (empty queue) for {duration:.0f} s ...")
    lat.reset()
    cpu0 = b.cpu_now()
    b.phase("steady-idle")
    ring = deque(clients)
    idle_sessions, unexpected = 0, 0
    stop_at = time.perf_counter() + duration

    async def idle_worker() -> None:
        nonlocal idle_sessions, unexpected
        while time.perf_counter() < stop_at:
            c = ring.popleft()
            try:
                done = await session(c)
            finally:
                ring.append(c)
            if done is not None:
                idle_sessions += 1
                unexpected += done

    try:
        await asyncio.wait_for(asyncio.gather(*(idle_worker() for _ in range(k))), duration + 120)
    except TimeoutError:
        raise BenchError("steady idle phase did not finish within its duration + 120 s") from None
    wall = (lat.last_end or time.perf_counter()) - (lat.first_start or 0.0)
    b.cpu_phase("steady idle", cpu0, b.cpu_now(), wall)
    st["idle"] = {"sessions": idle_sessions, "seconds": round(wall, 2),
                  "per_second": round(idle_sessions / wall, 1) if wall > 0 else None,
                  "unexpected_commands": unexpected, "latency_ms": lat.summary()["all"],
                  "cpu": b.result["cpu"].pop("phase")}
    log(f"  {idle_sessions:,} idle check-ins in {wall:.1f} s = {st['idle']['per_second']}/s")

    # command round trips: DeviceInformation for every device, Idle → command → Acknowledged
    lat.reset()
    cpu0 = b.cpu_now()
    b.phase("steady-round-trips")
    t0 = time.perf_counter()
    r = await api.post("/api/v1/commands", json={"request_type": "DeviceInformation", "school": SCHOOL})
    enqueue = time.perf_counter() - t0
    if r.status_code != 202:
        raise BenchError(f"POST /api/v1/commands answered {r.status_code}: {r.text[:300]}")
    job_id, queued = r.json()["job"]["id"], r.json()["queued"]
    log(f"steady: {queued:,} DeviceInformation queued in {enqueue:.2f} s; {k} clients answering ...")
    todo = deque(clients)
    round_trips, empty = 0, 0

    async def rt_worker() -> None:
        nonlocal round_trips, empty
        while todo:
            done = await session(todo.popleft())
            if done:
                round_trips += done
            elif done == 0:
                empty += 1

    try:
        await asyncio.wait_for(asyncio.gather(*(rt_worker() for _ in range(k))), b.storm_timeout)
    except TimeoutError:
        raise BenchError(f"steady round trips: not done within {b.storm_timeout:.0f} s "
                         f"({round_trips:,} of {n:,}; --storm-timeout)") from None
    wall = (lat.last_end or time.perf_counter()) - (lat.first_start or 0.0)
    b.phase("after")
    b.cpu_phase("steady round trips", cpu0, b.cpu_now(), wall)

    job = await finished_job(api, job_id, 60, "the DeviceInformation job to finish")
    st["round_trips"] = {"queued": queued, "enqueue_seconds": round(enqueue, 3), "round_trips": round_trips,
                         "sessions_without_command": empty, "seconds": round(wall, 2),
                         "per_second": round(round_trips / wall, 1) if wall > 0 else None,
                         "job_counts": job["counts"], "latency_ms": lat.summary()["all"],
                         "cpu": b.result["cpu"].pop("phase")}
    log(f"  {round_trips:,} round trips in {wall:.1f} s = {st['round_trips']['per_second']}/s")
    errors = st["errors"] = errors_since(fleet, errs0)
    stats = fleet.stats()
    st["double_applications"] = stats["double_applications"]
    if errors["simulator"] or errors["non_2xx"] or failures:
        raise BenchError(f"steady errors: {errors['by_stage']} {errors['http']} e.g. {errors['samples'][-3:]}")
    if job["counts"]["acknowledged"] != n or round_trips != n:
        raise BenchError(f"steady: {round_trips:,} round trips, job counts {job['counts']} (expected {n:,})")
    if stats["double_applications"]:
        raise BenchError(f"double_applications = {stats['double_applications']} (must be 0)")
