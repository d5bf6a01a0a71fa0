"""A small HTTP/2-over-TLS server on asyncio + h2: connections, requests, flow-controlled replies.

``H2Server`` accepts TLS connections (ALPN ``h2``; client certificates optional, checked
against ``client_ca_path``) and hands each complete request to ``handle(conn, sid, headers,
body)`` as bytes: ``headers`` is a dict of the request's header block. A handler answers at
once with ``conn.respond``/``conn.respond_json``, later from a task (``conn.spawn``), resets
the stream (``conn.reset``), drops the connection (``conn.abort``), or never answers.

Built for many tiny requests per connection at little CPU: one read's events are handled
in one pass and answered in one write, ``FastH2Connection`` keeps stream counting O(1) and
HPACK literals plain, and the per-request header values that are unique (ids) should be
passed as ``hpack.NeverIndexedHeaderTuple`` so they do not churn the peer's HPACK table.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Coroutine, Iterable
from typing import Any

import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from mdm.push.h2conn import FastH2Connection

log = logging.getLogger(__name__)

_RequestReceived = h2.events.RequestReceived
_DataReceived = h2.events.DataReceived
_StreamEnded = h2.events.StreamEnded
_StreamReset = h2.events.StreamReset
_WindowUpdated = h2.events.WindowUpdated
_SettingsChanged = h2.events.RemoteSettingsChanged
_Terminated = h2.events.ConnectionTerminated
_JSON = (b"content-type", b"application/json")
_STATUS = {n: str(n).encode() for n in (200, 400, 403, 404, 405, 410, 413, 429, 500, 503)}


class H2Connection(asyncio.Protocol):
    """One client connection. ``peer_cert`` is the client certificate (DER) or None;
    ``context`` is the application's, set in ``H2Server.connected``."""

    def __init__(self, server: H2Server) -> None:
        self.server, self.h2 = server, FastH2Connection(client_side=False)
        self.transport: asyncio.Transport | None = None
        self.peer_cert: bytes | None = None
        self.context: Any = None
        self.requests: dict[int, list] = {}  # sid -> [headers, body] until the request is complete
        self.pending: dict[int, bytes] = {}  # response bodies waiting for flow-control window
        self.tasks: dict[int, asyncio.Task] = {}
        self._receiving = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.peer_cert = transport.get_extra_info("ssl_object").getpeercert(binary_form=True) or None
        self.server._conns.add(self)
        self.h2.initiate_connection()
        self.h2.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.server.max_streams})
        self.h2.increment_flow_control_window(2**24)
        self.server.connected(self)
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._conns.discard(self)
        for task in self.tasks.values():
            task.cancel()

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data and not self.transport.is_closing():
            self.transport.write(data)

    def abort(self) -> None:
        """Drop the connection now, without a GOAWAY (like a crash or a network cut)."""
        self.flush()
        self.transport.abort()

    def goaway(self, reason: bytes = b"") -> None:
        """Close gracefully: GOAWAY (NO_ERROR, ``reason`` as debug data), then the connection."""
        self.h2.close_connection(additional_data=reason or None)
        self.flush()
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        h2c, requests, handle = self.h2, self.requests, self.server.handle
        try:
            events = h2c.receive_data(data)
        except h2.exceptions.ProtocolError:  # h2 queued a GOAWAY
            self.flush()
            self.transport.close()
            return
        self._receiving = True
        try:
            for ev in events:
                t = type(ev)
                if t is _RequestReceived:
                    requests[ev.stream_id] = [dict(ev.headers), b""]
                elif t is _DataReceived:
                    h2c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    req = requests.get(ev.stream_id)
                    if req is not None:
                        req[1] += ev.data
                        if len(req[1]) > self.server.max_body:
                            del requests[ev.stream_id]
                            self.reset(ev.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
                elif t is _StreamEnded:
                    req = requests.pop(ev.stream_id, None)
                    if req is not None:
                        handle(self, ev.stream_id, req[0], req[1])
                        if self.transport.is_closing():  # the handler dropped the connection
                            return
                elif t is _StreamReset:
                    sid = ev.stream_id
                    requests.pop(sid, None)
                    self.pending.pop(sid, None)
                    if sid in self.tasks:
                        self.tasks.pop(sid).cancel()
                    h2c.stream_closed()
                elif t is _WindowUpdated or t is _SettingsChanged:
                    for sid in list(self.pending):
                        self._send_body(sid, self.pending.pop(sid))
                elif t is _Terminated:
                    self.flush()
                    self.transport.close()
                    return
        finally:
            self._receiving = False
        self.flush()

    def respond(self, sid: int, status: int, body: bytes = b"", headers: Iterable[tuple] = ()) -> None:
        """Answer stream ``sid``; ``headers`` beyond ``:status`` (and content-length, added here)."""
        hdrs = [(b":status", _STATUS.get(status) or str(status).encode()), *headers]
        if body:
            hdrs.append((b"content-length", str(len(body)).encode()))
        try:
            self.h2.send_headers(sid, hdrs, end_stream=not body)
        except h2.exceptions.H2Error:  # the client reset the stream meanwhile
            return
        if body:
            self._send_body(sid, body)
        else:
            self.h2.stream_closed()
        if not self._receiving:
            self.flush()

    def respond_json(self, sid: int, status: int, obj: object, headers: Iterable[tuple] = ()) -> None:
        self.respond(sid, status, json.dumps(obj, separators=(",", ":")).encode(), [*headers, _JSON])

    def reset(self, sid: int, code: int = h2.errors.ErrorCodes.INTERNAL_ERROR) -> None:
        try:
            self.h2.reset_stream(sid, code)
        except h2.exceptions.H2Error:
            return
        self.h2.stream_closed()
        if not self._receiving:
            self.flush()

    def spawn(self, sid: int, coro: Coroutine) -> None:
        """Run an async handler for stream ``sid``; cancelled if the stream or connection goes."""
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks[sid] = task
        task.add_done_callback(lambda _t: self.tasks.pop(sid, None))

    def _send_body(self, sid: int, data: bytes) -> None:
        h2c = self.h2
        try:
            while data:
                n = min(h2c.local_flow_control_window(sid), h2c.max_outbound_frame_size, len(data))
                if n <= 0:
                    self.pending[sid] = data  # wait for WINDOW_UPDATE
                    return
                h2c.send_data(sid, data[:n], end_stream=n == len(data))
                data = data[n:]
        except h2.exceptions.H2Error:
            return
        h2c.stream_closed()


class H2Server:
    """Serve on the running loop: ``port = await start(host, port)``, ``await stop()``.
    Subclasses implement ``handle`` and may implement ``connected``."""

    def __init__(self, cert_path: str, key_path: str, client_ca_path: str | None = None, *,
                 max_streams: int = 1000, max_body: int = 65536) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(cert_path, key_path)
        if client_ca_path:
            ctx.load_verify_locations(client_ca_path)
            ctx.verify_mode = ssl.CERT_OPTIONAL  # the handler decides which requests need one
        ctx.set_alpn_protocols(["h2"])
        self.ssl_context, self.max_streams, self.max_body, self.port = ctx, max_streams, max_body, None
        self._conns: set[H2Connection] = set()
        self._server: asyncio.Server | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: H2Connection(self), host, port, ssl=self.ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for conn in list(self._conns):
                conn.transport.abort()
            await self._server.wait_closed()
            self._server = None

    def connected(self, conn: H2Connection) -> None:
        """A client connected (TLS done); ``conn.peer_cert`` is known."""

    def handle(self, conn: H2Connection, sid: int, headers: dict, body: bytes) -> None:
        conn.respond_json(sid, 404, {"reason": "BadPath"})
