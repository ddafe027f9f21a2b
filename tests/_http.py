"""A real local HTTP server for tests: serves a folder on 127.0.0.1 from a background thread."""

from __future__ import annotations

import contextlib
import functools
import http.server
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ServedDir", "serve_directory", "unused_port"]


@dataclass
class ServedDir:
    """A running server: its base URL (ending in '/') and the paths it was asked for."""

    url: str
    requests: list[str] = field(default_factory=list)


@contextlib.contextmanager
def serve_directory(root: str | Path) -> Iterator[ServedDir]:
    """Serve `root` over HTTP on 127.0.0.1 (a free port) for the duration of the block."""
    served = ServedDir(url="")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass  # keep test output clean

        def do_GET(self) -> None:
            served.requests.append(self.path)
            super().do_GET()

    handler = functools.partial(Handler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    served.url = f"http://127.0.0.1:{server.server_address[1]}/"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def unused_port() -> int:
    """A local TCP port with nothing listening on it (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
