"""The simulator's HTTP/1.1 client (simulator.http) against scripted asyncio servers and real uvicorn."""

from __future__ import annotations

import asyncio
import ssl
import time

import pytest
from cryptography.hazmat.primitives import serialization

from mdm import pki
from simulator.http import (ConnectionClosed, HTTPClient, HTTPError, ProtocolError, RequestTimeout,
                            tls_context)
from simulator.http_parse import ResponseParser
from tests.support.live import LiveServer, free_socket


class Scripted:
    """A server that reads HTTP/1.1 requests and answers with what ``reply(request, n_on_conn)`` returns:
    bytes to write, ("close", bytes) to write then close, or None to close without answering."""

    def __init__(self, reply) -> None:
        self.reply = reply
        self.requests: list[tuple[int, str, str, dict, bytes]] = []  # (connection, method, target, headers, body)
        self.connections = 0
        self.open = 0
        self.peak_open = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn, n = self.connections, 0
        self.open += 1
        self.peak_open = max(self.peak_open, self.open)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                line, *fields = head.decode("latin-1").rstrip("\r\n").split("\r\n")
                method, target, _ = line.split(" ")
                headers = {k.strip().lower(): v.strip() for k, v in (f.split(":", 1) for f in fields)}
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                self.requests.append((conn, method, target, headers, body))
                n += 1
                out = self.reply((method, target, headers, body), n)
                if asyncio.iscoroutine(out):
                    out = await out
                if out is None:
                    return
                close = isinstance(out, tuple)
                writer.write(out[1] if close else out)
                await writer.drain()
                if close:
                    return
        finally:
            self.open -= 1
            writer.close()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc) -> None:
        self.server.close()


def ok(body: bytes = b"", extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


def run(coro):
    return asyncio.run(coro)


def test_keep_alive_reuse_and_case_insensitive_headers():
    async def go():
        srv = Scripted(lambda req, n: b"HTTP/1.1 201 Created\r\nCONTENT-LENGTH: 3\r\nX-Thing: a\r\nx-thing: b\r\n\r\n"
                       + req[3][:3])
        async with srv as url:
            client = HTTPClient(max_connections=4)
            rs = [await client.request("PUT", url + "/mdm/connect?x=1", content=b"abc%d" % i,
                                       headers={"Content-Type": "t"}) for i in range(3)]
            await client.aclose()
        assert [(r.status_code, r.reason, r.content) for r in rs] == [(201, "Created", b"abc")] * 3
        assert rs[0].headers["x-thing"] == "a, b" and rs[0].headers["content-length"] == "3"
        assert srv.connections == 1 and [r[2] for r in srv.requests] == ["/mdm/connect?x=1"] * 3
        h = srv.requests[0][3]
        assert h["host"] == url.removeprefix("http://") and h["content-length"] == "4" and h["content-type"] == "t"
    run(go())


def test_get_with_params_sends_no_body_headers():
    async def go():
        srv = Scripted(lambda req, n: ok(b"caps"))
        async with srv as url:
            client = HTTPClient()
            r = await client.request("GET", url + "/scep", params={"operation": "GetCACaps", "m": "a b&c"})
            await client.aclose()
        assert r.text == "caps"
        assert srv.requests[0][2] == "/scep?operation=GetCACaps&m=a+b%26c" and "content-length" not in srv.requests[0][3]
    run(go())


def test_chunked_reply_with_extensions_and_trailers_and_interim_100():
    reply = (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
             b"5;ext=1\r\nhello\r\n1A\r\n" + b"x" * 26 + b"\r\n0\r\nTrailer-Field: 1\r\n\r\n")

    async def go():
        srv = Scripted(lambda req, n: reply)
        async with srv as url:
            client = HTTPClient()
            a = await client.request("PUT", url + "/c", content=b"1")
            b = await client.request("PUT", url + "/c", content=b"2")
            await client.aclose()
        assert a.content == b.content == b"hello" + b"x" * 26 and srv.connections == 1
    run(go())


def test_connection_close_and_close_delimited_bodies_are_not_reused():
    async def go():
        srv = Scripted(lambda req, n: ok(b"bye", "Connection: close\r\n") if req[1] == "/close"
                       else ("close", b"HTTP/1.1 200 OK\r\n\r\nuntil the end"))
        async with srv as url:
            client = HTTPClient()
            a = await client.request("PUT", url + "/close", content=b"1")
            b = await client.request("PUT", url + "/close", content=b"2")
            c = await client.request("PUT", url + "/eof", content=b"3")
            await client.aclose()
        assert (a.content, b.content, c.content) == (b"bye", b"bye", b"until the end")
        assert not a.keep_alive and not c.keep_alive and srv.connections == 3
    run(go())


def test_stale_keep_alive_connection_is_retried_only_for_idempotent_methods():
    async def go():
        # the second request on every connection finds it closed (the keep-alive race)
        srv = Scripted(lambda req, n: ok(b"fine") if n == 1 else None)
        async with srv as url:
            client = HTTPClient()
            await client.request("PUT", url + "/a", content=b"1")
            r = await client.request("PUT", url + "/a", content=b"2")  # retried on a new connection
            assert r.content == b"fine" and srv.connections == 2
            with pytest.raises(ConnectionClosed) as e:
                await client.request("POST", url + "/a", content=b"3")  # may have been processed: not resent
            assert not e.value.response_started
            await client.aclose()
        assert [r[4] for r in srv.requests] == [b"1", b"2", b"2", b"3"]
    run(go())


def test_response_cut_short_is_an_error_and_not_retried():
    async def go():
        srv = Scripted(lambda req, n: ("close", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"))
        async with srv as url:
            client = HTTPClient()
            with pytest.raises(ConnectionClosed) as e:
                await client.request("PUT", url + "/a", content=b"1")
            await client.aclose()
        assert e.value.response_started and len(srv.requests) == 1
    run(go())


@pytest.mark.parametrize("reply, message", [
    (b"HTTP/2 200 OK\r\n\r\n", "status line"),
    (b"HTTP/1.1 2000 OK\r\n\r\n", "status line"),
    (b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n", "header line"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "Transfer-Encoding"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nx", "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size"),
    (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "101"),
])
def test_malformed_replies_are_protocol_errors(reply, message):
    async def go():
        srv = Scripted(lambda req, n: reply)
        async with srv as url:
            client = HTTPClient()
            with pytest.raises(ProtocolError, match=message):
                await client.request("PUT", url + "/a", content=b"1")
            pool = next(iter(client._pools.values()))
            await client.aclose()
        assert pool.count == 0 and not pool.idle  # a connection that spoke nonsense is not kept
    run(go())


def test_timeout_closes_the_connection_and_the_pool_recovers():
    async def go():
        srv = Scripted(lambda req, n: ok(b"quick") if req[1] == "/quick" else b"")  # /never: no answer
        async with srv as url:
            client = HTTPClient(max_connections=1, timeout=0.3)
            t0 = time.perf_counter()
            with pytest.raises(RequestTimeout):
                await client.request("PUT", url + "/never", content=b"1")
            assert 0.25 < time.perf_counter() - t0 < 2
            r = await client.request("PUT", url + "/quick", content=b"2")
            await client.aclose()
        assert r.content == b"quick" and srv.connections == 2
    run(go())


def test_pool_limit_waiters_and_cancellation_do_not_leak_slots():
    async def go():
        async def answer_later(req, n):
            await asyncio.sleep(0.05)
            return ok(req[3])

        srv = Scripted(lambda req, n: answer_later(req, n))
        async with srv as url:
            client = HTTPClient(max_connections=2)
            rs = await asyncio.gather(*(client.request("PUT", url + "/p", content=b"%d" % i) for i in range(8)))
            assert [r.content for r in rs] == [b"%d" % i for i in range(8)] and srv.peak_open <= 2
            tasks = [asyncio.ensure_future(client.request("PUT", url + "/p", content=b"c")) for _ in range(5)]
            await asyncio.sleep(0.01)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            r = await asyncio.wait_for(client.request("PUT", url + "/p", content=b"after"), 5)
            pool = next(iter(client._pools.values()))
            await client.aclose()
        assert r.content == b"after" and pool.count <= 2 and not pool.waiters
    run(go())


def test_header_injection_is_refused():
    async def go():
        client = HTTPClient()
        with pytest.raises(ValueError):
            await client.request("PUT", "http://127.0.0.1:9/x", headers={"X": "a\r\nEvil: 1"})
        await client.aclose()
    run(go())


def test_parser_reads_byte_by_byte_and_head_has_no_body():
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    p = ResponseParser("PUT")
    out = [p.feed(raw[i:i + 1]) for i in range(len(raw))]
    assert all(o is None for o in out[:-1]) and out[-1].content == b"abc"
    head = ResponseParser("HEAD").feed(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n")
    assert head is not None and head.content == b"" and head.keep_alive
    old = ResponseParser("GET").feed(b"HTTP/1.0 204 No Content\r\n\r\n")
    assert old is not None and not old.keep_alive
    with pytest.raises(ProtocolError):
        ResponseParser("GET").feed(b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 20_000)


# -- TLS: a real uvicorn server (as the MDM server runs), certificates verified -------------------------------------
async def asgi_app(scope, receive, send):
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    body = b""
    while True:
        m = await receive()
        body += m.get("body", b"")
        if not m.get("more_body"):
            break
    if scope["path"] == "/stream":  # no Content-Length: uvicorn answers chunked
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for part in (b"one,", b"two,", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    headers = [(b"content-length", str(len(body)).encode())]
    if scope["path"] == "/close":
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    ca = pki.create_ca("HTTP Test CA", "Test")
    server = pki.issue_tls_server(ca, ["localhost"], ["127.0.0.1"])
    (d / "ca.pem").write_bytes(ca.cert.public_bytes(serialization.Encoding.PEM))
    (d / "tls.pem").write_bytes(server.cert.public_bytes(serialization.Encoding.PEM))
    (d / "tls.key").write_bytes(server.key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    with LiveServer(asgi_app, free_socket(), str(d / "tls.pem"), str(d / "tls.key")) as srv:
        yield srv, str(d / "ca.pem")


def test_real_uvicorn_over_tls_keep_alive_chunked_and_close(tls_server):
    srv, ca = tls_server

    async def go():
        client = HTTPClient(ssl_context=tls_context(ca), max_connections=2)
        big = bytes(range(256)) * 1000
        echo = [await client.request("PUT", srv.url + "/echo", content=b"x%d" % i) for i in range(20)]
        large = await client.request("PUT", srv.url + "/echo", content=big)
        stream = await client.request("GET", srv.url + "/stream")
        pool = client._pools[("https", "127.0.0.1", srv.port)]
        counts = [pool.count]  # one connection carried all of them
        closed = await client.request("PUT", srv.url + "/close", content=b"c")
        counts.append(pool.count)  # and is gone after Connection: close
        after = await client.request("PUT", srv.url.replace("127.0.0.1", "localhost") + "/echo", content=b"l")
        await client.aclose()
        return echo, large, stream, closed, after, counts

    echo, large, stream, closed, after, counts = run(go())
    assert [r.content for r in echo] == [b"x%d" % i for i in range(20)] and large.content == bytes(range(256)) * 1000
    assert stream.headers["transfer-encoding"] == "chunked" and stream.content == b"one,two,three"
    assert closed.content == b"c" and not closed.keep_alive and after.content == b"l"
    assert counts == [1, 0]


def test_tls_refuses_a_server_certificate_from_another_ca(tls_server, tmp_path):
    srv, _ = tls_server
    other = pki.create_ca("Other CA", "Elsewhere")
    (tmp_path / "other.pem").write_bytes(other.cert.public_bytes(serialization.Encoding.PEM))

    async def go():
        client = HTTPClient(ssl_context=tls_context(str(tmp_path / "other.pem")))
        try:
            with pytest.raises(HTTPError, match="certificate verify failed"):
                await client.request("GET", srv.url + "/echo")
            insecure = HTTPClient(ssl_context=tls_context(insecure=True))
            r = await insecure.request("PUT", srv.url + "/echo", content=b"ok")
            await insecure.aclose()
            return r
        finally:
            await client.aclose()

    assert run(go()).content == b"ok"
    assert isinstance(tls_context(), ssl.SSLContext)
