"""One HTTP/2 connection to APNs: an asyncio protocol driving ``h2``, carrying pushes as streams.

The connection knows requests only as ``Request`` objects (headers and body out, status,
apns-id, retry-after and body back) and reports to its owner, the client's ``Link``:
``_on_reply(req)`` for a complete reply, ``_on_error(req, reason)`` for a request that got
none, ``_on_broken(req, exc)`` for one h2 refused to send, ``_on_lost(conn, requests,
reason)`` when the connection dies (with the requests it still carried), ``_retire(conn)``
when it can open no more streams, and ``_pump()`` when streams are free for queued requests.

It is ready once the server's SETTINGS arrived, never opens more streams than
``min(limit, the server's MAX_CONCURRENT_STREAMS)``, honours flow control for request bodies,
and gives every stream ``timeout`` seconds: one timer watches the oldest stream only
(streams are kept in send order, so deadlines are ordered too). A timeout with nothing heard
from the server since that request went out means the connection is dead: it is dropped.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import h2.errors
import h2.exceptions
import h2.settings
from h2.events import (ConnectionTerminated, DataReceived, RemoteSettingsChanged, ResponseReceived, StreamEnded,
                       StreamReset, WindowUpdated)

from mdm.push.h2conn import FastH2Connection



class Request:
    """One attempt's wire state; ``APNsClient`` subclasses it to carry the push across attempts."""

    __slots__ = ("headers", "body", "deadline", "status", "apns_id", "retry_after", "data")

    def __init__(self, headers: list, body: bytes) -> None:
        self.headers, self.body, self.deadline = headers, body, 0.0
        self.status: int | None = None
        self.apns_id: str | None = None
        self.retry_after: str | None = None
        self.data = b""

    def skip(self) -> bool:
        """True to drop the request from the queue unsent (its caller went away)."""
        return False

    def clear_reply(self) -> None:
        self.status = self.apns_id = self.retry_after = None
        self.data = b""


def _goaway_reason(ev: ConnectionTerminated) -> str:
    try:  # APNs explains a GOAWAY in JSON: {"reason": "Shutdown"}
        reason = json.loads(ev.additional_data or b"")["reason"]
    except (ValueError, TypeError, KeyError):
        return "GoAway"
    return reason if isinstance(reason, str) and reason else "GoAway"


class APNsConnection(asyncio.Protocol):
    def __init__(self, owner: Any, limit: int, timeout: float) -> None:
        self.owner, self.limit, self.timeout = owner, limit, timeout
        self.loop = asyncio.get_running_loop()
        self.h2 = FastH2Connection(client_side=True)
        self.h2.local_settings = h2.settings.Settings(client=True, initial_values={
            h2.settings.SettingCodes.ENABLE_PUSH: 0, h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100})
        self.transport: asyncio.Transport | None = None
        self.ready: asyncio.Future = self.loop.create_future()  # None once SETTINGS came, else why not
        self.streams: dict[int, Request] = {}  # in send order
        self.blocked: dict[int, bytes] = {}  # request bodies waiting for flow-control window
        self.max_streams = 1
        self.accepting, self.dead = True, False
        self.alpn: str | None = None
        self.last_rx = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._lost = self.loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        ssl_object = transport.get_extra_info("ssl_object")
        self.alpn = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(2**24)
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._lost.done():
            self._lost.set_result(None)
        self._die(type(exc).__name__ if exc is not None else "ConnectionClosed")

    def data_received(self, data: bytes) -> None:
        if self.dead:
            return
        self.last_rx = self.loop.time()
        h2c, streams = self.h2, self.streams
        try:
            events = h2c.receive_data(data)
        except h2.exceptions.ProtocolError as e:
            self.flush()
            return self._die(type(e).__name__)
        for ev in events:
            t = type(ev)
            if t is ResponseReceived:
                req = streams.get(ev.stream_id)
                if req is not None:
                    for name, value in ev.headers:
                        if name == b":status":
                            req.status = int(value) if value.isdigit() else None
                        elif name == b"apns-id":
                            req.apns_id = value.decode("latin-1")
                        elif name == b"retry-after":
                            req.retry_after = value.decode("latin-1")
            elif t is StreamEnded:
                req = streams.pop(ev.stream_id, None)
                if req is not None:
                    self._ended(ev.stream_id)
                    self._deliver(req, None if req.status is not None else "NoStatus")
            elif t is DataReceived:
                h2c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                req = streams.get(ev.stream_id)
                if req is not None and len(req.data) < 65536:
                    req.data += ev.data
            elif t is StreamReset:
                req = streams.pop(ev.stream_id, None)
                if req is not None:
                    self.blocked.pop(ev.stream_id, None)
                    h2c.stream_closed()
                    self._deliver(req, "StreamReset")
            elif t is RemoteSettingsChanged:
                self.max_streams = h2c.remote_settings.max_concurrent_streams
                if not self.ready.done():
                    self.ready.set_result(None)
                self._send_blocked()
            elif t is WindowUpdated:
                self._send_blocked()
            elif t is ConnectionTerminated:
                self.flush()
                return self._die(_goaway_reason(ev))
        if not self.accepting and not streams:  # drained after running out of stream ids
            self.detach()
        else:
            self.owner._pump()
        self.flush()

    def _deliver(self, req: Request, error: str | None) -> None:
        """The outcome of a request to the owner: its reply, or why there is none."""
        try:
            if error is None:
                self.owner._on_reply(req)
            else:
                self.owner._on_error(req, error)
        except Exception as e:  # the request must end somehow, and the connection go on
            self.owner._on_broken(req, e)

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data and not self.transport.is_closing():
            self.transport.write(data)

    def send_from(self, queue: Any) -> None:
        """Open streams for queued requests while the limits allow."""
        h2c, streams = self.h2, self.streams
        limit = min(self.limit, self.max_streams)
        if len(streams) >= limit or not self.accepting or self.dead:
            return
        deadline = self.loop.time() + self.timeout
        while queue and len(streams) < limit:
            req = queue.popleft()
            if req.skip():
                continue
            try:
                sid = h2c.get_next_available_stream_id()
            except h2.exceptions.NoAvailableStreamIDError:  # after ~10^9 streams: drain, then reconnect
                queue.appendleft(req)
                self.accepting = False
                self.owner._retire(self)
                break
            try:
                h2c.send_headers(sid, req.headers)
                try:
                    h2c.send_data(sid, req.body, end_stream=True)
                except (h2.exceptions.FlowControlError, h2.exceptions.FrameTooLargeError):
                    self.blocked[sid] = req.body
                    self._send_blocked()
            except h2.exceptions.TooManyStreamsError:  # the server lowered its limit under us
                queue.appendleft(req)
                break
            except Exception as e:  # a request h2 refuses (bad header value…): final for this push
                if sid in h2c.streams:
                    self.blocked.pop(sid, None)
                    self._reset(sid)
                self.owner._on_broken(req, e)
                continue
            req.deadline = deadline
            streams[sid] = req
        self.flush()
        self._arm()

    def _arm(self) -> None:
        """Time the oldest stream: the first in send order has the earliest deadline."""
        if self._timer is None and self.streams:
            self._timer = self.loop.call_at(next(iter(self.streams.values())).deadline, self._expire)

    def _send_blocked(self) -> None:
        h2c = self.h2
        for sid in list(self.blocked):
            data = self.blocked.pop(sid)
            try:
                while data:
                    n = min(h2c.local_flow_control_window(sid), h2c.max_outbound_frame_size, len(data))
                    if n <= 0:
                        self.blocked[sid] = data
                        break
                    h2c.send_data(sid, data[:n], end_stream=n == len(data))
                    data = data[n:]
            except h2.exceptions.H2Error:
                continue

    def _reset(self, sid: int, code: int = h2.errors.ErrorCodes.CANCEL) -> None:
        try:
            self.h2.reset_stream(sid, code)
        except h2.exceptions.H2Error:
            pass
        self.h2.stream_closed()

    def _ended(self, sid: int) -> None:
        if self.blocked and sid in self.blocked:  # replied before our body was out: stop sending it
            del self.blocked[sid]
            self._reset(sid, h2.errors.ErrorCodes.NO_ERROR)
        else:
            self.h2.stream_closed()

    def _expire(self) -> None:
        self._timer = None
        if self.dead:
            return
        now, expired = self.loop.time(), []
        for sid, req in self.streams.items():
            if req.deadline > now:
                break
            expired.append(sid)
        silent = bool(expired) and self.last_rx < self.streams[expired[0]].deadline - self.timeout
        for sid in expired:
            req = self.streams.pop(sid)
            self.blocked.pop(sid, None)
            self._reset(sid)
            self._deliver(req, "Timeout")
        if silent:  # nothing heard since that request went out: the connection is gone
            self.transport.abort()
            return self._die("Timeout")
        self.owner._pump()
        self.flush()
        self._arm()

    def _die(self, reason: str) -> None:
        """Fail what is in flight (the owner retries it) and tell the owner; idempotent."""
        if not self.ready.done():
            self.ready.set_result(reason)
        if self.dead:
            return
        carried = self._stop()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        self.owner._on_lost(self, carried, reason)

    def detach(self) -> list[Request]:
        """Send GOAWAY and close; returns what was in flight (for the owner's ``close``)."""
        carried = self._stop()
        if self.transport is not None and not self.transport.is_closing():
            try:
                self.h2.close_connection()
            except h2.exceptions.H2Error:
                pass
            self.flush()
            self.transport.close()
        return carried

    def _stop(self) -> list[Request]:
        self.dead = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        carried, self.streams = list(self.streams.values()), {}
        self.blocked.clear()
        return carried

    def abort(self) -> None:
        self.dead = True
        if self.transport is not None:
            self.transport.abort()

    async def wait_closed(self, timeout: float) -> None:
        if self.transport is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._lost), timeout)
        except TimeoutError:
            self.transport.abort()
