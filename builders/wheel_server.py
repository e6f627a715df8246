"""Serve a fixed set of wheel files on a loopback port while an image builds (pip `--find-links http://...`).

The build's `pip install --no-index --require-hashes` reads the index page (links to exactly these files) and
downloads only what the lock lists, each checked against its hash, so no wheel ever enters the build context or
a layer. The server answers GET and HEAD for the listed names only and runs in a daemon thread for the duration
of a `with` block.
"""

from __future__ import annotations

import html
import shutil
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class WheelServer:
    """The running server: its URL and the files it serves."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = dict(files)
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, name="wheel-server", daemon=True)
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}/"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(timeout=10)

    def index(self) -> bytes:
        links = "".join(
            f'<a href="{urllib.parse.quote(name)}">{html.escape(name)}</a>\n' for name in sorted(self.files)
        )
        return f"<!DOCTYPE html><html><body>\n{links}</body></html>\n".encode()


def _handler(server: WheelServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            self._answer(body=False)

        def do_GET(self) -> None:
            self._answer(body=True)

        def _answer(self, *, body: bool) -> None:
            name = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path.lstrip("/"))
            if name == "":
                data = server.index()
                self._headers(HTTPStatus.OK, "text/html", len(data))
                if body:
                    self.wfile.write(data)
                return
            path = server.files.get(name)
            if path is None or not path.is_file():
                self._headers(HTTPStatus.NOT_FOUND, "text/plain", 0)
                return
            self._headers(HTTPStatus.OK, "application/octet-stream", path.stat().st_size)
            if body:
                with path.open("rb") as handle:
                    shutil.copyfileobj(handle, self.wfile, 1 << 20)

        def _headers(self, status: HTTPStatus, content_type: str, length: int) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(length))
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return None

    return Handler


@contextmanager
def serve_wheels(wheels: list[Path]) -> Iterator[WheelServer]:
    """Serve `wheels` (by file name) on 127.0.0.1 until the block ends."""
    server = WheelServer({path.name: path for path in wheels})
    server.start()
    try:
        yield server
    finally:
        server.stop()
