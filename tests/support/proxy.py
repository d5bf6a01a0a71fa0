"""A TCP load balancer for tests: round-robin over backends, skipping those that refuse.

TLS passes through (each instance terminates TLS with the same certificate), as an
L4 load balancer in front of several schoolmdm instances would.
"""

from __future__ import annotations

import asyncio
import itertools
import threading


class TCPBalancer:
    def __init__(self, backends: list[tuple[str, int]], host: str = "127.0.0.1") -> None:
        self.backends = backends
        self.host = host
        self.port: int | None = None
        self.connections: dict[int, int] = {p: 0 for _, p in backends}
        self._rr = itertools.cycle(range(len(backends)))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="tcp-balancer")
        self._server = None

    async def _pipe(self, reader, writer) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader, writer) -> None:
        for _ in range(len(self.backends)):
            host, port = self.backends[next(self._rr)]
            try:
                br, bw = await asyncio.open_connection(host, port)
            except OSError:
                continue
            self.connections[port] += 1
            await asyncio.gather(self._pipe(reader, bw), self._pipe(br, writer))
            return
        writer.close()

    def __enter__(self) -> "TCPBalancer":
        self._thread.start()

        async def start():
            self._server = await asyncio.start_server(self._handle, self.host, 0)
            return self._server.sockets[0].getsockname()[1]

        self.port = asyncio.run_coroutine_threadsafe(start(), self._loop).result(10)
        return self

    def __exit__(self, *exc) -> None:
        async def stop():
            self._server.close()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
