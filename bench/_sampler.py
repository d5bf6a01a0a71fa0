"""A CPU-weighted stack sampler for every thread of the server (``--profile-server``).

cProfile and pyinstrument see one thread; the server's work is spread over the event loop
and the threadpool (database, signing). This sampler wakes every few milliseconds, reads
each thread's own CPU clock (by kernel thread id) and charges the CPU time the thread
used since the last wake-up to the stack it is in now. Over thousands of samples that is a
fair picture of where the server's CPU goes, C extensions (OpenSSL, SQLite, psycopg)
showing up as the Python function that called them.

The bench starts the server with ``PYTHONPATH`` pointing at a generated ``sitecustomize``
that calls ``install()`` when ``BENCH_PROFILE_DIR`` is set, so the server's spawned workers are
profiled too. Each process writes ``profile-<pid>.json`` there every few seconds and at exit.
Samples are kept per phase: the bench writes the phase name ("enroll", "storm", ...) to
``<dir>/phase``. ``merge()`` and ``render()`` turn the files into a text report.

CPU a thread used since the previous sample while it is now parked (a threadpool worker
back in its queue, the event loop back in epoll) cannot be placed: it is reported as
"(work finished between samples)". A thread asleep in C (SQLite's busy wait, a socket read:
``/proc`` state not running, kernel wait channel not a futex) used its CPU before it
blocked; that CPU counts for its callers (inclusive) but, for the leaf, under
"(blocked in C; CPU used before) <leaf>". A thread waiting for the GIL is frozen where it
ran, so its stack is charged as is. SQL statements are timed too (SQLAlchemy cursor
events: count, wall and CPU seconds of the calling thread per statement).
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path

INTERVAL = 0.001
FLUSH_EVERY = 5.0
PHASE_EVERY = 0.25
ROOT = str(Path(__file__).resolve().parent.parent)


IDLE = "(work finished between samples: thread parked now)"


def _parked(leaf: str) -> bool:
    """A thread waiting for work: the threadpool's queue, the event loop (uvloop's run is C)."""
    return leaf.startswith(("stdlib/threading.py:", "stdlib/queue.py:", "stdlib/selectors.py:",
                            "stdlib/runners.py:", "stdlib/base_events.py:"))


def _thread_clock(native_id: int) -> int:
    """Linux's CPU clock of one thread, by kernel thread id (``MAKE_THREAD_CPUCLOCK(tid,
    CPUCLOCK_SCHED)``). ``pthread_getcpuclockid`` takes a ``pthread_t``, which dangles once the
    thread has exited between ``sys._current_frames()`` and the call: the worker died of SIGSEGV
    when a threadpool thread ended at that moment. A dead tid's clock is just EINVAL."""
    return (~native_id << 3) | 6


def _blocked(native_id: int | None) -> bool:
    """Asleep in the kernel other than on a futex (the GIL, a lock): I/O or a sleep."""
    if native_id is None:
        return False
    try:
        with open(f"/proc/self/task/{native_id}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        if state == b"R":
            return False
        with open(f"/proc/self/task/{native_id}/wchan", "rb") as f:
            wchan = f.read()
    except (OSError, IndexError):
        return False
    return bool(wchan) and wchan != b"0" and b"futex" not in wchan


def _where(code) -> str:
    fn = code.co_filename
    if fn.startswith(ROOT):
        fn = fn[len(ROOT) + 1:]
    else:
        i = fn.find("site-packages/")
        if i >= 0:
            fn = fn[i + len("site-packages/"):]
        elif "/lib/python" in fn:
            fn = "stdlib/" + fn.rsplit("/", 1)[-1]
    return f"{fn}:{code.co_firstlineno}:{code.co_name}"


class Sampler:
    def __init__(self, out_dir: Path, interval: float = INTERVAL) -> None:
        self.out_dir = out_dir
        self.interval = interval
        self.phase = "start"
        self.phases: dict[str, dict] = {}
        self._last: dict[int, float] = {}
        self._natives: dict[int, int | None] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="bench-stack-sampler", daemon=True)

    def _bucket(self) -> dict:
        b = self.phases.get(self.phase)
        if b is None:
            b = self.phases[self.phase] = {"cpu": 0.0, "samples": 0, "self": Counter(), "incl": Counter(),
                                           "stacks": Counter(), "sql": {}, "blocked": 0.0, "ticks": 0}
        return b

    def _read_phase(self) -> None:
        try:
            self.phase = (self.out_dir / "phase").read_text().strip() or self.phase
        except OSError:
            pass

    def _native(self, ident: int) -> int | None:
        """The kernel thread id of a Python thread ident (idents are reused once a thread ends)."""
        return self._natives.get(ident)

    def sample(self) -> None:
        me = threading.get_ident()
        frames = sys._current_frames()
        if frames.keys() != self._natives.keys():
            self._natives = {t.ident: t.native_id for t in threading.enumerate() if t.ident is not None}
        with self._lock:
            b = self._bucket()
            b["ticks"] += 1
            for ident, frame in frames.items():
                if ident == me:
                    continue
                nid = self._native(ident)
                if nid is None:
                    continue
                try:
                    cpu = time.clock_gettime(_thread_clock(nid))
                except (OSError, OverflowError):  # the thread ended since sys._current_frames()
                    continue
                prev = self._last.get(ident)
                self._last[ident] = cpu
                if prev is None or cpu <= prev:
                    continue
                dt = cpu - prev
                stack = []
                f = frame
                while f is not None:
                    stack.append(_where(f.f_code))
                    f = f.f_back
                b["cpu"] += dt
                b["samples"] += 1
                if _parked(stack[0]):
                    b["self"][IDLE] += dt
                    b["incl"][IDLE] += dt
                    continue
                if _blocked(nid):
                    b["self"]["(blocked in C; CPU used before) " + stack[0]] += dt
                    b["blocked"] += dt
                else:
                    b["self"][stack[0]] += dt
                for w in set(stack):
                    b["incl"][w] += dt
                b["stacks"][" <- ".join(stack[:12])] += dt
            for ident in list(self._last):
                if ident not in frames:
                    del self._last[ident]

    def _run(self) -> None:
        next_flush = next_phase = time.monotonic()
        while not self._stop.wait(self.interval):
            now = time.monotonic()
            if now >= next_phase:
                self._read_phase()
                next_phase = now + PHASE_EVERY
            try:
                self.sample()
            except Exception:  # never take the server down
                pass
            if now >= next_flush:
                self.flush()
                next_flush = now + FLUSH_EVERY

    def flush(self) -> None:
        with self._lock:
            data = {"pid": os.getpid(), "argv": sys.argv[:4], "phases": {
                name: {"cpu": b["cpu"], "samples": b["samples"], "blocked": b["blocked"],
                       "ticks": b["ticks"], "self": dict(b["self"].most_common(400)),
                       "incl": dict(b["incl"].most_common(400)), "stacks": dict(b["stacks"].most_common(60)),
                       "sql": b["sql"]}
                for name, b in self.phases.items()}}
        path = self.out_dir / f"profile-{os.getpid()}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)

    def watch_sql(self) -> None:
        """Time every SQL statement of every engine in this process (count, wall s, CPU s)."""
        try:
            from sqlalchemy import event
            from sqlalchemy.engine import Engine
        except ImportError:
            return

        def before(conn, cursor, statement, params, context, executemany):
            conn.info.setdefault("_bench_t", []).append((time.perf_counter(), time.thread_time()))

        def after(conn, cursor, statement, params, context, executemany):
            stack = conn.info.get("_bench_t")
            if not stack:
                return
            t0, c0 = stack.pop()
            key = " ".join(statement.split())[:240]
            with self._lock:
                row = self._bucket()["sql"].setdefault(key, [0, 0.0, 0.0])
                row[0] += 1
                row[1] += time.perf_counter() - t0
                row[2] += time.thread_time() - c0

        event.listen(Engine, "before_cursor_execute", before)
        event.listen(Engine, "after_cursor_execute", after)

    def start(self) -> None:
        self._read_phase()
        self.watch_sql()
        self._thread.start()
        atexit.register(self.stop)

    def stop(self) -> None:
        self._stop.set()
        self.flush()


def install() -> Sampler | None:
    out = os.environ.get("BENCH_PROFILE_DIR")
    if not out:
        return None
    s = Sampler(Path(out))
    s.start()
    return s


SITECUSTOMIZE = f"""\
import sys
sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
try:
    import _sampler
    _sampler.install()
finally:
    del sys.path[0]
"""


def prepare(out_dir: Path) -> dict[str, str]:
    """Write the sitecustomize into ``out_dir``; the environment that makes a child use it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "sitecustomize.py").write_text(SITECUSTOMIZE)
    set_phase(out_dir, "start")
    pythonpath = os.pathsep.join(x for x in (str(out_dir), os.environ.get("PYTHONPATH", "")) if x)
    return {"BENCH_PROFILE_DIR": str(out_dir), "PYTHONPATH": pythonpath}


def set_phase(out_dir: Path, name: str) -> None:
    (out_dir / "phase").write_text(name + "\n")


def merge(out_dir: Path) -> dict[str, dict]:
    """Every process's samples added up, per phase."""
    merged: dict[str, dict] = {}
    for path in sorted(out_dir.glob("profile-*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for name, b in data["phases"].items():
            m = merged.setdefault(name, {"cpu": 0.0, "samples": 0, "self": Counter(), "incl": Counter(),
                                         "stacks": Counter(), "sql": {}, "blocked": 0.0, "ticks": 0})
            m["cpu"] += b["cpu"]
            m["samples"] += b["samples"]
            m["blocked"] += b.get("blocked", 0.0)
            m["ticks"] += b.get("ticks", 0)
            for k in ("self", "incl", "stacks"):
                m[k].update(b[k])
            for stmt, (n, wall, cpu) in b.get("sql", {}).items():
                row = m["sql"].setdefault(stmt, [0, 0.0, 0.0])
                row[0] += n
                row[1] += wall
                row[2] += cpu
    return merged


def render(merged: dict[str, dict], top: int = 30) -> str:
    out = []
    for name, b in merged.items():
        if b["cpu"] < 0.05:
            continue
        total = b["cpu"]
        out.append(f"== phase {name}: {total:.1f} CPU s sampled in the server processes ({b['ticks']:,} wake-ups, "
                   f"{b['samples']:,} thread samples; {b['self'].get(IDLE, 0.0):.1f} s finished between samples, "
                   f"{b['blocked']:.1f} s charged to threads now blocked in C)")
        for title, key in (("self (CPU in the function itself)", "self"), ("inclusive", "incl")):
            out.append(f"-- top {top} {title}")
            for where, t in b[key].most_common(top):
                out.append(f"{t:8.2f} s {100 * t / total:5.1f}%  {where}")
        out.append(f"-- top {top} inclusive, project code only (app/, mdm/, profiles/)")
        ours = [(w, t) for w, t in b["incl"].most_common() if w.startswith(("app/", "mdm/", "profiles/"))]
        for where, t in ours[:top]:
            out.append(f"{t:8.2f} s {100 * t / total:5.1f}%  {where}")
        out.append("-- hottest stacks (leaf first, 12 frames)")
        for stack, t in b["stacks"].most_common(12):
            out.append(f"{t:8.2f} s {100 * t / total:5.1f}%  {stack}")
        sql = sorted(b["sql"].items(), key=lambda kv: -kv[1][1])
        if sql:
            out.append(f"-- top {top} SQL statements by wall time (count, wall s, CPU s of the calling thread)")
            for stmt, (n, wall, cpu) in sql[:top]:
                out.append(f"{n:8,} {wall:8.2f} s {cpu:7.2f} s  {stmt}")
        out.append("")
    return "\n".join(out)
