"""CoalescingTransport: what one event-loop turn writes reaches the socket in one write; nothing
is lost, reordered or sent after a close. And a real uvicorn server on it answers correctly
(plain, empty, streamed, keep-alive and error responses)."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest

from app.http_protocol import HTTP_PROTOCOL, CoalescingTransport


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = self.aborted = self.eof = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def write_eof(self) -> None:
        self.eof = True

    def get_write_buffer_size(self) -> int:
        return 7

    def get_extra_info(self, name, default=None):
        return {"peername": ("127.0.0.1", 1234)}.get(name, default)


async def _turn() -> None:
    await asyncio.sleep(0)


def _coalescing() -> tuple[FakeTransport, CoalescingTransport]:
    """A fake transport and the coalescing one in front of it (inside a running loop)."""
    real = FakeTransport()
    return real, CoalescingTransport(real, asyncio.get_running_loop())


def test_a_head_and_its_body_go_out_as_one_write_at_once():
    async def run():
        real, t = _coalescing()
        t.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n")
        assert real.writes == [] and t.get_write_buffer_size() == 7 + 38
        t.write(b"hello")  # no waiting for the end of the loop's turn
        assert real.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"]
        t.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        t.write(b"")  # an empty body (uvicorn writes it) sends the head
        assert real.writes[1:] == [b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"]
        await _turn()
        assert len(real.writes) == 2  # nothing was left to flush
        assert t.get_extra_info("peername") == ("127.0.0.1", 1234)  # the rest is the real transport's

    asyncio.run(run())


def test_what_is_left_held_goes_out_at_the_end_of_the_turn_in_order():
    async def run():
        real, t = _coalescing()
        t.write(b"head")
        await _turn()
        assert real.writes == [b"head"]  # a body slow to come does not hold the head back
        t.writelines([b"1,", b"2,", b"3,"])
        assert real.writes[1:] == [b"1,2,"]
        await _turn()
        assert real.writes[1:] == [b"1,2,", b"3,"]

    asyncio.run(run())


def test_close_and_eof_flush_first_abort_drops():
    async def run():
        real, t = _coalescing()
        t.write(b"last words")
        t.close()
        assert real.writes == [b"last words"] and real.closed
        await _turn()  # the scheduled flush finds nothing and writes nothing after the close
        assert real.writes == [b"last words"]

        real, t = _coalescing()
        t.write(b"a")
        t.write_eof()
        assert real.writes == [b"a"] and real.eof

        real, t = _coalescing()
        t.write(b"dropped")
        t.abort()
        await _turn()
        assert real.writes == [] and real.aborted

    asyncio.run(run())


async def _app(scope, receive, send):
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/boom":
        raise RuntimeError("the app failed")
    if path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for i in range(50):
            await send({"type": "http.response.body", "body": b"%d," % i, "more_body": True})
            if i % 10 == 0:
                await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b"end"})
        return
    body = b"" if path == "/empty" else b"<plist>" + path.encode() * 100 + b"</plist>"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


@pytest.mark.skipif(HTTP_PROTOCOL == "auto", reason="needs httptools")
def test_a_real_server_on_it_answers_every_kind_of_response():
    import threading
    import time

    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(_app, http=HTTP_PROTOCOL, log_level="critical", lifespan="off"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.02)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:  # one keep-alive connection
            for i in range(20):
                r = c.get(f"/p{i}")
                assert r.status_code == 200 and r.content == b"<plist>" + f"/p{i}".encode() * 100 + b"</plist>"
                r = c.get("/empty")
                assert r.status_code == 200 and r.content == b"" and r.headers["content-length"] == "0"
            r = c.get("/stream")
            assert r.status_code == 200 and r.text == "".join(f"{i}," for i in range(50)) + "end"
            assert c.get("/boom").status_code == 500
            assert c.get("/p-after").status_code == 200
    finally:
        server.should_exit = True
        thread.join(timeout=20)
