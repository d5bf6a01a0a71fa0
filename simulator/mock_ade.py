"""Mock of Apple's device assignment API (ADE) for one MDM server, with a device-side endpoint.

The API as ``mdm.ade.client`` uses it: ``GET /session`` (OAuth 1.0a HMAC-SHA1 checked against
the credentials of the server tokens this mock made), then ``X-ADM-Auth-Session`` and
``X-Server-Protocol-Version`` on ``GET /account``, ``POST /server/devices`` (fetch),
``POST /devices/sync``, ``POST /devices``, ``POST``/``GET /profile`` and ``PUT``/``DELETE
/profile/devices``. Errors are Apple's: a status with a bare code as body (``UNAUTHORIZED``,
``EXPIRED_CURSOR``, ...); injected faults answer 5xx or 429 with ``Retry-After``.

For virtual iPads: ``GET /_device/cloud-configuration/{serial}`` is what a device learns in
Setup Assistant (its assigned profile, device key names). Test and demo helpers:
``POST /_mock/seed``, ``POST /_mock/server-token`` (body: the MDM server's ADE certificate
PEM; answers a ``.p7m``), ``POST /_mock/inject``, ``GET /_mock/stats``.

``MockADEThread`` runs it with uvicorn in a thread; ``python -m simulator.mock_ade`` serves it.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import threading
import time
from pathlib import Path

import uvicorn
from cryptography import x509
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response

from mdm.ade import oauth
from mdm.ade.client import MAX_LIMIT, SESSION_HEADER
from mdm.ade.token import seal_server_token
from mdm.errors import ParseError
from simulator.ade_state import ADEState

OAUTH_MAX_SKEW = 300  # seconds between oauth_timestamp and now


def _error(status: int, code: str, retry_after: int | None = None) -> Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return PlainTextResponse(code, status_code=status, headers=headers)


def make_server_token(state: ADEState, cert: x509.Certificate | bytes, *, cipher: str = "aes256") -> bytes:
    """A new set of credentials for this mock, as the ``.p7m`` Apple School Manager would serve."""
    if isinstance(cert, bytes):
        cert = x509.load_pem_x509_certificate(cert)
    return seal_server_token(state.new_token(), cert, cipher=cipher)


def create_mock_ade(state: ADEState | None = None, *, server_name: str = "schoolmdm",
                    org_name: str = "Stadt Musterstadt Schulen") -> FastAPI:
    st = state or ADEState()
    app = FastAPI(title="mock ADE", docs_url=None, redoc_url=None)
    app.state.ade = st

    @app.middleware("http")
    async def api_guard(request: Request, call_next):
        path = request.url.path
        if path.startswith(("/_mock", "/_device")) or path == "/session":
            return await call_next(request)
        st.counts["requests"] += 1
        fault = st.take_fault(path)
        if fault is not None:
            st.counts[f"fault:{fault.status}"] += 1
            if fault.status == 401:
                st.expire_sessions()
            return _error(fault.status, fault.reason, fault.retry_after)
        if not st.session_valid(request.headers.get(SESSION_HEADER)):
            st.counts["unauthorized"] += 1
            return _error(401, "UNAUTHORIZED")
        if not request.headers.get("x-server-protocol-version"):
            return _error(400, "MISSING_X_SERVER_PROTOCOL_VERSION")
        response = await call_next(request)
        response.headers[SESSION_HEADER] = request.headers[SESSION_HEADER]
        return response

    @app.get("/session")
    async def session(request: Request):
        try:
            params = oauth.parse_authorization(request.headers.get("authorization"))
        except ParseError:
            return _error(400, "oauth_problem_advice=Missing OAuth header")
        cred = st.credentials.get(params.get("oauth_consumer_key", ""))
        if cred is None or params.get("oauth_token") != cred.access_token:
            return _error(401, "unauthorized")
        if cred.access_token_expiry and cred.access_token_expiry < st.now():
            return _error(403, "oauth_problem_advice=token_rejected")
        try:
            skew = abs(time.time() - int(params.get("oauth_timestamp", "0")))
        except ValueError:
            skew = OAUTH_MAX_SKEW + 1
        nonce = params.get("oauth_nonce", "")
        if skew > OAUTH_MAX_SKEW or not nonce or nonce in st.nonces:
            return _error(401, "unauthorized")
        if not oauth.verify("GET", str(request.url), params, cred.consumer_secret, cred.access_secret):
            return _error(401, "signature_invalid")
        st.nonces.add(nonce)
        st.counts["sessions"] += 1
        return {"auth_session_token": st.new_session()}

    @app.get("/account")
    async def account():
        return {"server_name": server_name, "server_uuid": "E5CC2C6D-5F60-4A8B-9E6B-6C1A3A5D1F00",
                "admin_id": "asm-admin@musterstadt.de", "facilitator_id": "asm-admin@musterstadt.de",
                "org_name": org_name, "org_email": "it@schulen.musterstadt.de", "org_phone": "+49 30 123456",
                "org_address": "Rathausplatz 1, 12345 Musterstadt", "org_type": "edu", "org_version": "v2",
                "org_id": "2190318", "org_id_hash": "1a0f8f0b3c", "urls": []}

    async def _json(request: Request) -> dict | None:
        try:
            body = await request.json()
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def _limit(body: dict) -> int:
        limit = body.get("limit", 100)
        return max(1, min(MAX_LIMIT, limit if isinstance(limit, int) else 100))

    @app.post("/server/devices")
    async def fetch(request: Request):
        body = await _json(request)
        if body is None:
            return _error(400, "MALFORMED_REQUEST_BODY")
        out = st.fetch(body.get("cursor"), _limit(body))
        return _error(400, out) if isinstance(out, str) else out

    @app.post("/devices/sync")
    async def sync(request: Request):
        body = await _json(request)
        if body is None:
            return _error(400, "MALFORMED_REQUEST_BODY")
        out = st.sync(body.get("cursor"), _limit(body))
        return _error(400, out) if isinstance(out, str) else out

    @app.post("/devices")
    async def details(request: Request):
        body = await _json(request) or {}
        serials = body.get("devices") or []
        return {"devices": {s: (st.devices[s].as_json() if s in st.devices and st.devices[s].owned
                                else {"response_status": "NOT_FOUND"}) for s in serials}}

    @app.post("/profile")
    async def define_profile(request: Request):
        body = await _json(request)
        if body is None:
            return _error(400, "MALFORMED_REQUEST_BODY")
        out = st.define_profile(body)
        return _error(400, out) if isinstance(out, str) else out

    @app.get("/profile")
    async def get_profile(profile_uuid: str = ""):
        p = st.profiles.get(profile_uuid)
        return _error(400, "PROFILE_NOT_FOUND") if p is None else {**p, "profile_uuid": profile_uuid}

    @app.put("/profile/devices")
    async def assign(request: Request):
        body = await _json(request) or {}
        uuid, serials = body.get("profile_uuid"), body.get("devices")
        if uuid not in st.profiles:
            return _error(400, "PROFILE_NOT_FOUND")
        if not isinstance(serials, list) or not serials or len(serials) > MAX_LIMIT:
            return _error(400, "DEVICE_ID_REQUIRED")
        return {"profile_uuid": uuid, "devices": st.assign(uuid, [str(s) for s in serials])}

    @app.delete("/profile/devices")
    async def unassign(request: Request):
        body = await _json(request) or {}
        serials = body.get("devices")
        if not isinstance(serials, list) or not serials:
            return _error(400, "DEVICE_ID_REQUIRED")
        return {"devices": st.unassign([str(s) for s in serials])}

    # -- the device side and the test helpers ----------------------------------------------
    @app.get("/_device/cloud-configuration/{serial}")
    async def cloud_configuration(serial: str):
        cfg = st.cloud_configuration(serial)
        return _error(404, "NO_PROFILE_ASSIGNED") if cfg is None else cfg

    @app.post("/_mock/seed")
    async def seed(request: Request):
        body = await _json(request) or {}
        schools = body.get("schools") or ["school"]
        return st.seed(int(body.get("n", 10)), list(schools), body.get("prefix"))

    @app.post("/_mock/server-token")
    async def server_token(request: Request):
        try:
            p7m = make_server_token(st, await request.body())
        except ValueError:
            return _error(400, "NOT_A_PEM_CERTIFICATE")
        return Response(p7m, media_type="application/pkcs7-mime")

    @app.post("/_mock/inject")
    async def inject(request: Request):
        b = await _json(request) or {}
        st.inject(int(b.get("status", 503)), int(b.get("n", 1)), b.get("reason"), b.get("retry_after"), b.get("path"))
        return {"queued": len(st.faults)}

    @app.get("/_mock/stats")
    async def stats():
        with st.lock:
            by_status: dict[str, int] = {}
            for d in st.devices.values():
                by_status[d.profile_status] = by_status.get(d.profile_status, 0) + 1
            return {"devices": len(st.devices), "profiles": len(st.profiles), "events": len(st.events),
                    "profile_status": by_status, "counts": dict(st.counts)}

    return app


class MockADEThread:
    """The mock on uvicorn in a daemon thread: ``with MockADEThread() as url: t.state.seed(...)``."""

    def __init__(self, state: ADEState | None = None, host: str = "127.0.0.1", port: int = 0, **kw) -> None:
        self.state = state or ADEState()
        self.app = create_mock_ade(self.state, **kw)
        self.host, self.port = host, port
        self.server = uvicorn.Server(uvicorn.Config(self.app, host=host, port=port, log_level="warning",
                                                    access_log=False, lifespan="off"))
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()), name="mock-ade",
                                       daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("mock ADE did not start")
            time.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self.url

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="mock-ade", description="Mock of Apple's device assignment API (ADE)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8444)
    ap.add_argument("--devices", type=int, default=0, help="seed this many serials")
    ap.add_argument("--schools", default="school", help="comma-separated school ids to split them across")
    ap.add_argument("--token-cert", type=Path, help="the MDM server's ADE certificate (PEM): write a server token")
    ap.add_argument("--token-out", type=Path, default=Path("server-token.p7m"))
    args = ap.parse_args(argv)
    state = ADEState()
    if args.devices:
        split = state.seed(args.devices, [s for s in args.schools.split(",") if s])
        for school, serials in split.items():
            print(f"{school}: {len(serials)} serials, first {serials[:3]}", flush=True)
    if args.token_cert:
        args.token_out.write_bytes(make_server_token(state, args.token_cert.read_bytes()))
        print(f"server token written to {args.token_out}", flush=True)
    print(f"mock-ade listening on http://{args.host}:{args.port} ({dt.datetime.now():%H:%M:%S})", flush=True)
    uvicorn.run(create_mock_ade(state), host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
