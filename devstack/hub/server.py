"""Run the Hub test server: in a thread (`HubServer`, for tests) or a process (`main`, for dev up)."""

from __future__ import annotations

import argparse
import socket
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType

import uvicorn

from devstack.hub.app import HubApp, HubSettings
from devstack.hub.control import Faults, RequestLog
from devstack.net import LOOPBACK
from devstack.repostore import RepoStore


class HubServerError(Exception):
    """The Hub test server could not start or stop; the message says why and what to check."""


class HubServer:
    """A Hub-compatible HTTP server for the repositories of a RepoStore, run by uvicorn in a daemon thread.

    >>> with HubServer(root, tokens=["hf_test"], page_size=2) as hub:
    ...     HfApi(endpoint=hub.url).model_info("org/name")

    `faults` (inject errors and delays) and `requests` (what was asked, bytes sent) are live and thread-safe.
    """

    def __init__(
        self,
        store_root: Path | RepoStore,
        *,
        tokens: Iterable[str] = (),
        page_size: int = 1000,
        tree_page_size: int | None = None,
        host: str = LOOPBACK,
        port: int = 0,
    ) -> None:
        if page_size < 1:
            raise HubServerError(f"page_size must be at least 1, got {page_size}")
        self.store = store_root if isinstance(store_root, RepoStore) else RepoStore(Path(store_root))
        self.settings = HubSettings(
            tokens=frozenset(tokens), page_size=page_size, tree_page_size=tree_page_size or page_size
        )
        self.faults = Faults()
        self.requests = RequestLog()
        self.app = HubApp(self.store, self.settings, self.faults, self.requests)
        self.host = host
        self._port = port
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._socket is None:
            raise HubServerError("the Hub test server is not started: call start() first")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def tokens(self) -> frozenset[str]:
        return self.settings.tokens

    @tokens.setter
    def tokens(self, tokens: Iterable[str]) -> None:
        self.settings.tokens = frozenset(tokens)

    def deny_gated(self, token: str, repo_id: str) -> None:
        """Treat valid `token` as not granted the gated `repo_id`: its downloads get 403 GatedRepo."""
        self.settings.gated_denied = self.settings.gated_denied | {(token, repo_id)}

    def start(self, timeout: float = 15.0) -> HubServer:
        if self._thread is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self._port))
        except OSError as exc:
            sock.close()
            raise HubServerError(f"cannot bind {self.host}:{self._port} ({exc}); pick a free port") from exc
        sock.listen(128)
        self._port = int(sock.getsockname()[1])
        self._socket = sock
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        self._server = server
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"hub-server-{self._port}", daemon=True
        )
        thread.start()
        self._thread = thread
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise HubServerError(f"the Hub test server did not start on {self.host}:{self._port} in {timeout}s")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive() and self._server is not None:
                self._server.force_exit = True
                self._thread.join(timeout)
        if self._socket is not None:
            self._socket.close()
        self._thread = None
        self._server = None
        self._socket = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m devstack.hub_server --root DIR --port P`: serve until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m devstack.hub_server", description=main.__doc__)
    parser.add_argument("--root", type=Path, required=True, help="RepoStore directory to serve")
    parser.add_argument("--host", default=LOOPBACK)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", action="append", default=[], help="accepted bearer token (repeatable)")
    parser.add_argument("--page-size", type=int, default=1000)
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        parser.error(f"--root {args.root} is not a directory; build the sample repos first")
    hub = HubServer(args.root, tokens=args.token, page_size=args.page_size, host=args.host, port=args.port)
    print(f"Hub test server for {args.root} on http://{args.host}:{args.port}", flush=True)
    uvicorn.run(hub.app, host=args.host, port=args.port, log_level="warning", access_log=False, lifespan="off")
