"""A real server for end-to-end tests: uvicorn over HTTPS on a free port, in a thread."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import uvicorn

from app.http_protocol import HTTP_PROTOCOL


def free_socket(host: str = "127.0.0.1") -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, 0))
    s.listen(512)
    return s


class LiveServer:
    def __init__(self, app, sock: socket.socket, certfile: str, keyfile: str) -> None:
        self.sock = sock
        self.port = sock.getsockname()[1]
        self.url = f"https://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, ssl_certfile=certfile, ssl_keyfile=keyfile, log_level="warning",
                                access_log=False, lifespan="on", http=HTTP_PROTOCOL)  # as the server runs
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, name="live-server", daemon=True)

    def _run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("live server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
