"""``serve --workers N`` on Linux: N server processes, each on a listening socket of its own.

uvicorn's ``--workers`` shares one listening socket between its workers, and whichever worker
is awake when connections arrive accepts all of them. Many short connections even out, but a
few long-lived keep-alive connections (a reverse proxy's pool, a load generator's clients)
can all land on one worker while the others idle: the steady-state bench saw one worker take
all 8 connections (81.6 s of CPU against 5.1 s). Here every worker binds its own socket with
``SO_REUSEPORT`` and the kernel spreads new connections over them by a hash of the addresses.

The supervisor imports only the standard library (the app and uvicorn live in the workers),
restarts a worker that dies, gives up if a worker cannot start at all (the port is taken, the
TLS key is unreadable), and on SIGTERM or SIGINT stops the workers gracefully, then by force.

    python -m app.supervisor --workers 2 --host 0.0.0.0 --port 8443 [--ssl-certfile F --ssl-keyfile K]
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

log = logging.getLogger("schoolmdm.supervisor")

#: uvicorn's exit code when the app's lifespan startup failed
STARTUP_FAILURE = 3
#: our own exit code when a worker cannot bind its socket
BIND_FAILURE = 4
#: a worker that dies sooner than this after its start counts as crashing
STABLE_AFTER = 30.0
#: restart back-off after repeated quick deaths, capped
BACKOFF_MAX = 30.0
#: how long stopping workers get before SIGKILL
STOP_GRACE = 30.0


def reuseport_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` in the port's SO_REUSEPORT group, not yet listening:
    the kernel hands connections only to listening sockets, and asyncio listens once uvicorn has
    loaded the app, so a (re)starting worker gets no connections it cannot answer yet."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def port_is_free(host: str, port: int) -> str | None:
    """None if nothing listens on ``host:port``, else why not. A plain bind (without SO_REUSEPORT)
    fails on a port that has listeners, so a second ``serve`` on the same port is refused
    instead of silently joining the first one's SO_REUSEPORT group."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers are fine
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def worker_main(args: argparse.Namespace) -> int:
    """One worker: bind, load the app, listen, and serve until told to stop."""
    import uvicorn

    from app.http_protocol import HTTP_PROTOCOL

    try:
        sock = reuseport_socket(args.host, args.port)
    except OSError as exc:
        print(f"worker {os.getpid()}: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
              file=sys.stderr, flush=True)
        return BIND_FAILURE
    ssl = {"ssl_certfile": args.ssl_certfile, "ssl_keyfile": args.ssl_keyfile} if args.ssl_certfile else {}
    config = uvicorn.Config("app.main:create_app", factory=True, log_level=args.log_level,
                            access_log=False, http=HTTP_PROTOCOL, **ssl)
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    return 0 if server.started else STARTUP_FAILURE


@dataclass
class Slot:
    """One worker position: its current process and how it has been dying."""
    index: int
    proc: subprocess.Popen | None = None
    started: float = 0.0
    quick_deaths: int = 0
    restart_at: float = 0.0
    history: list[int] = field(default_factory=list)


class Supervisor:
    def __init__(self, worker_argv: list[str], workers: int, *, clock=time.monotonic) -> None:
        self.worker_argv = worker_argv
        self.slots = [Slot(i) for i in range(workers)]
        self.clock = clock
        self.stopping = False
        self.exit_code = 0

    def _spawn(self, slot: Slot) -> None:
        slot.proc = subprocess.Popen(self.worker_argv)
        slot.started = self.clock()
        log.info("worker %d started (pid %d)", slot.index + 1, slot.proc.pid)

    def _on_signal(self, signum, _frame) -> None:
        if not self.stopping:
            log.info("%s: stopping the workers", signal.Signals(signum).name)
        self.stopping = True

    def check(self) -> None:
        """Reap dead workers and restart them; sets ``stopping`` when one cannot start at all."""
        now = self.clock()
        for slot in self.slots:
            if slot.proc is None:
                if now >= slot.restart_at:
                    self._spawn(slot)
                continue
            code = slot.proc.poll()
            if code is None:
                continue
            slot.history.append(code)
            slot.proc = None
            if code in (STARTUP_FAILURE, BIND_FAILURE):
                log.error("worker %d could not start (exit code %d); stopping", slot.index + 1, code)
                self.exit_code = code
                self.stopping = True
                return
            lived = now - slot.started
            slot.quick_deaths = slot.quick_deaths + 1 if lived < STABLE_AFTER else 0
            delay = min(BACKOFF_MAX, 2.0 ** (slot.quick_deaths - 1)) if slot.quick_deaths else 0.0
            slot.restart_at = now + delay
            log.warning("worker %d exited (code %d) after %.0f s; restarting in %.0f s",
                        slot.index + 1, code, lived, delay)

    def stop(self, grace: float = STOP_GRACE) -> None:
        live = [s.proc for s in self.slots if s.proc is not None and s.proc.poll() is None]
        for proc in live:
            proc.send_signal(signal.SIGTERM)
        deadline = self.clock() + grace
        for proc in live:
            try:
                proc.wait(timeout=max(0.0, deadline - self.clock()))
            except subprocess.TimeoutExpired:
                log.warning("worker pid %d did not stop within %.0f s; killing it", proc.pid, grace)
                proc.kill()
                proc.wait()

    def run(self, poll: float = 0.5) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        for slot in self.slots:
            self._spawn(slot)
        try:
            while not self.stopping:
                time.sleep(poll)
                self.check()
        finally:
            self.stop()
        log.info("all workers stopped")
        return self.exit_code


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m app.supervisor", description=__doc__.split("\n")[0])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ssl-certfile")
    ap.add_argument("--ssl-keyfile")
    ap.add_argument("--log-level", default="info")
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    if args.worker:
        return worker_main(args)
    if args.workers < 1:
        print("--workers must be at least 1", file=sys.stderr)
        return 2
    busy = port_is_free(args.host, args.port)
    if busy:
        print(f"cannot listen on {args.host}:{args.port}: {busy}", file=sys.stderr)
        return BIND_FAILURE
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    worker_argv = [sys.executable, "-m", "app.supervisor", "--worker", *argv]
    log.info("supervisor pid %d: %d workers on %s:%d (SO_REUSEPORT)", os.getpid(), args.workers,
             args.host, args.port)
    return Supervisor(worker_argv, args.workers).run()


if __name__ == "__main__":
    sys.exit(main())
