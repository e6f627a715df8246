"""A lean HTTP/1.1 client for streamed completions that timestamps bytes when they arrive.

Why not httpx on this path: profiled at 64 concurrent streams (docs/benchmarks/throughput.md), the old httpx
harness spent over half its CPU in httpcore's connection pool (each request's assignment scans every
connection) and every chunk went through anyio, h11 and line splitting before it could be timestamped; the event
loop fell behind and reported its own queueing as the server's latency.

What this client does instead:
- One keep-alive connection per stream: a closed-loop worker reuses the one it just returned, an open-loop run
  dials another when none is idle.
- `http://`: the socket is read with `recvmsg`, and on Linux `SO_TIMESTAMPNS` gives the kernel's receive time of
  the bytes, so a read that a busy loop performs late still carries the time the bytes arrived (`read_lag` says
  how late). `https://`: asyncio's TLS transport, timestamped when the loop reads.
- Per read, the hot path only appends the bytes and their arrival time and advances the chunked-framing scan to
  know when the response ends; server-sent events are split (`sse_events`) after the run.
Times are wall-clock seconds (`time.time()`, the kernel timestamps' clock). Requests honour no proxy settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
import struct
import sys
import time
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from validators.errors import BenchmarkError

_SO_TIMESTAMPNS: int | None = getattr(socket, "SO_TIMESTAMPNS", 35 if sys.platform == "linux" else None)
_ANCILLARY = socket.CMSG_SPACE(16)
_TIMESPEC = struct.Struct("qq")
_READ_SIZE = 256 * 1024
_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")


@dataclass
class Exchange:
    """One request and the raw bytes of its response, with the arrival time of every read."""

    start: float = field(default_factory=time.time)
    status: int = 0
    raw: bytearray = field(default_factory=bytearray, repr=False)
    read_ends: list[int] = field(default_factory=list, repr=False)
    read_times: list[float] = field(default_factory=list, repr=False)
    read_lags: list[float] = field(default_factory=list, repr=False)
    segments: list[tuple[int, int]] = field(default_factory=list, repr=False)
    end: float | None = None
    error: str | None = None
    timed_out: bool = False
    cancelled: bool = False
    keep_alive: bool = True
    _head_end: int = field(default=-1, init=False, repr=False)
    _mode: str = field(default="", init=False, repr=False)
    _scan: int = field(default=0, init=False, repr=False)
    _length: int = field(default=0, init=False, repr=False)

    @property
    def last_arrival(self) -> float:
        return self.read_times[-1] if self.read_times else self.start

    def feed(self, arrived: float, data: bytes) -> bool:
        """Add one read; True when the response is complete."""
        raw = self.raw
        raw += data
        self.read_ends.append(len(raw))
        self.read_times.append(arrived)
        if self._head_end < 0 and not self._parse_head():
            return False
        if self._mode == "chunked":
            return self._scan_chunks()
        if self._mode == "length" and len(raw) - self._scan >= self._length:
            self.segments = [(self._scan, self._scan + self._length)]
            self.end = arrived
            return True
        return False

    def eof(self) -> bool:
        """The peer closed the connection; True when that ended the response (a body delimited by close)."""
        self.keep_alive = False
        if self._mode == "close":
            self.segments = [(self._scan, len(self.raw))]
            self.end = self.last_arrival
            return True
        return False

    @property
    def body(self) -> bytes:
        return b"".join(bytes(self.raw[s:e]) for s, e in self.segments)

    def _parse_head(self) -> bool:
        head_end = self.raw.find(b"\r\n\r\n")
        if head_end < 0:
            return False
        lines = bytes(self.raw[:head_end]).decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        try:
            self.status = int(rest[:3])
        except ValueError as exc:
            raise BenchmarkError(f"not an HTTP response: {lines[0][:80]!r}") from exc
        headers = {k.strip().lower(): v.strip().lower() for k, _, v in (line.partition(":") for line in lines[1:])}
        connection = headers.get("connection", "")
        self.keep_alive = "close" not in connection and (version != "HTTP/1.0" or "keep-alive" in connection)
        self._head_end = head_end
        self._scan = head_end + 4
        if "chunked" in headers.get("transfer-encoding", ""):
            self._mode = "chunked"
        elif "content-length" in headers:
            self._mode, self._length = "length", int(headers["content-length"])
        else:
            self._mode, self.keep_alive = "close", False
        return True

    def _scan_chunks(self) -> bool:
        raw, pos = self.raw, self._scan
        while (eol := raw.find(b"\r\n", pos)) >= 0:
            try:
                size = int(bytes(raw[pos:eol]).split(b";", 1)[0], 16)
            except ValueError as exc:
                raise BenchmarkError(f"bad chunk size {bytes(raw[pos:eol])[:40]!r}") from exc
            if size == 0:
                if raw.find(b"\r\n\r\n", eol) < 0:
                    break
                self._scan = pos
                self.end = self.read_times[-1]
                return True
            following = eol + 2 + size + 2
            if len(raw) < following:
                break
            self.segments.append((eol + 2, eol + 2 + size))
            pos = following
        self._scan = pos
        return False


def sse_events(exchange: Exchange) -> Iterator[tuple[float, bytes]]:
    """(arrival time, data) of each server-sent event in the body, timed by the read that completed the event."""
    body = bytearray()
    body_ends: list[int] = []
    raw_ends: list[int] = []
    for start, end in exchange.segments:
        body += exchange.raw[start:end]
        body_ends.append(len(body))
        raw_ends.append(end)
    begin = 0
    for match in _EVENT_END.finditer(body):
        last = match.end() - 1
        segment = bisect_left(body_ends, last + 1)
        raw_offset = raw_ends[segment] - (body_ends[segment] - last)
        arrived = exchange.read_times[bisect_left(exchange.read_ends, raw_offset + 1)]
        data = [
            line[5:].removeprefix(b" ")
            for line in bytes(body[begin : match.start()]).splitlines()
            if line.startswith(b"data:")
        ]
        begin = match.end()
        if data:
            yield arrived, b"\n".join(data)


class _Link:
    """One connection; reads feed the current exchange and settle its future when the response is complete."""

    def __init__(self) -> None:
        self.exchange: Exchange | None = None
        self.future: asyncio.Future[None] | None = None
        self.reusable = True

    def begin(self, exchange: Exchange, future: asyncio.Future[None]) -> None:
        self.exchange, self.future = exchange, future

    async def send(self, data: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _stop_reading(self) -> None:
        return None

    def abandon(self) -> None:
        """Stop feeding the current exchange (its task was cancelled); the connection is not reused."""
        self.reusable = False
        self._stop_reading()
        self.exchange, self.future = None, None

    def _feed(self, arrived: float, lag: float, data: bytes) -> None:
        exchange = self.exchange
        if exchange is None:
            self.reusable = False  # bytes nobody asked for: do not reuse this connection
            return
        exchange.read_lags.append(lag)
        try:
            complete = exchange.feed(arrived, data)
        except BenchmarkError as exc:
            self.fail(str(exc))
            return
        if complete:
            self.reusable = exchange.keep_alive
            self._settle()

    def _eof(self) -> None:
        self.reusable = False
        exchange = self.exchange
        if exchange is not None:
            if not exchange.eof():
                exchange.error = exchange.error or "the server closed the connection before the response ended"
            self._settle()

    def fail(self, error: str, *, timed_out: bool = False) -> None:
        self.reusable = False
        if self.exchange is not None:
            self.exchange.error = self.exchange.error or error
            self.exchange.timed_out = timed_out
            self._settle()

    def _settle(self) -> None:
        self._stop_reading()
        future, self.exchange, self.future = self.future, None, None
        if future is not None and not future.done():
            future.set_result(None)


class _SocketLink(_Link):
    """Plain TCP, read with recvmsg; with SO_TIMESTAMPNS each read carries the kernel's receive time."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self.reading = False

    @classmethod
    async def dial(cls, address: tuple[int, Any]) -> _SocketLink:
        family, sockaddr = address
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if _SO_TIMESTAMPNS is not None:
            with contextlib.suppress(OSError):  # without it, reads are timed when the loop performs them
                sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        try:
            await asyncio.get_running_loop().sock_connect(sock, sockaddr)
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    def begin(self, exchange: Exchange, future: asyncio.Future[None]) -> None:
        super().begin(exchange, future)
        self.loop.add_reader(self.sock.fileno(), self._readable)
        self.reading = True

    async def send(self, data: bytes) -> None:
        await self.loop.sock_sendall(self.sock, data)

    def _readable(self) -> None:
        try:
            data, ancillary, _flags, _address = self.sock.recvmsg(_READ_SIZE, _ANCILLARY)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.fail(f"{type(exc).__name__}: {exc}")
            return
        now = time.time()
        if not data:
            self._eof()
            return
        arrived = now
        if ancillary:
            seconds, nanoseconds = _TIMESPEC.unpack_from(ancillary[0][2])
            arrived = min(now, seconds + nanoseconds * 1e-9)
        self._feed(arrived, now - arrived, data)

    def _stop_reading(self) -> None:
        if self.reading:
            self.loop.remove_reader(self.sock.fileno())
            self.reading = False

    def close(self) -> None:
        self._stop_reading()
        self.sock.close()


class _TlsLink(_Link, asyncio.Protocol):
    """TLS through asyncio's transport; reads are timestamped when the loop delivers them."""

    transport: asyncio.Transport | None = None

    @classmethod
    async def dial(cls, host: str, port: int) -> _TlsLink:
        loop = asyncio.get_running_loop()
        _, link = await loop.create_connection(cls, host, port, ssl=ssl.create_default_context())
        return link

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._feed(time.time(), 0.0, data)

    def eof_received(self) -> bool | None:
        self._eof()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof()

    async def send(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            raise ConnectionResetError("the TLS connection is closed")
        self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class StreamClient:
    """POSTs JSON bodies to one URL over a pool of keep-alive connections; `post` returns the raw exchange."""

    def __init__(self, url: str, *, headers: dict[str, str] | None = None, timeout_s: float = 120.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BenchmarkError(f"{url!r} is not an http(s) URL: give the base URL, e.g. http://127.0.0.1:8000/v1")
        self.tls = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.tls else 80)
        self.timeout_s = timeout_s
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        self._head = (
            f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUser-Agent: model-curation-bench\r\n"
            f"Content-Type: application/json\r\nAccept: text/event-stream\r\n{extra}Content-Length: "
        ).encode("latin-1")
        self._address: tuple[int, Any] | None = None
        self._idle: list[_Link] = []
        self._busy: set[_Link] = set()
        self._watchdog: asyncio.Task[None] | None = None

    async def __aenter__(self) -> StreamClient:
        self._watchdog = asyncio.create_task(self._expire())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        for link in [*self._idle, *self._busy]:
            link.close()
        self._idle.clear()
        self._busy.clear()

    async def post(self, body: bytes, exchange: Exchange | None = None) -> Exchange:
        """Send one request and wait for the whole response (errors are recorded on the exchange, not raised)."""
        exchange = exchange if exchange is not None else Exchange()
        request = self._head + b"%d\r\n\r\n" % len(body) + body
        for attempt in range(2):
            reused = bool(self._idle)
            try:
                link = self._idle.pop() if reused else await self._dial()
            except (OSError, ssl.SSLError, TimeoutError) as exc:
                exchange.error = f"ConnectError: {type(exc).__name__}: {exc}"[:200]
                exchange.timed_out = isinstance(exc, TimeoutError)
                return exchange
            self._busy.add(link)
            try:
                await self._exchange(link, request, exchange)
            except asyncio.CancelledError:
                exchange.cancelled = True
                link.abandon()
                raise
            finally:
                self._busy.discard(link)
                if link.reusable:
                    self._idle.append(link)
                else:
                    link.close()
            stale = reused and exchange.error is not None and not exchange.raw and not exchange.timed_out
            if not stale or attempt:
                return exchange
            exchange.error = None  # a kept-alive connection the server had closed: retry once on a new one
        return exchange

    async def _exchange(self, link: _Link, request: bytes, exchange: Exchange) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        exchange.start = time.time()
        link.begin(exchange, future)
        try:
            await link.send(request)
        except OSError as exc:
            link.fail(f"{type(exc).__name__}: {exc}")
        await future

    async def _dial(self) -> _Link:
        if self.tls:
            return await asyncio.wait_for(_TlsLink.dial(self.host, self.port), self.timeout_s)
        if self._address is None:
            infos = await asyncio.get_running_loop().getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
            if not infos:
                raise OSError(f"cannot resolve {self.host}")
            self._address = (infos[0][0], infos[0][4])
        return await asyncio.wait_for(_SocketLink.dial(self._address), self.timeout_s)

    async def _expire(self) -> None:
        """Fail requests that received nothing for `timeout_s` (the read timeout)."""
        interval = min(1.0, self.timeout_s / 4)
        while True:
            await asyncio.sleep(interval)
            now = time.time()
            for link in list(self._busy):
                exchange = link.exchange
                if exchange is not None and now - exchange.last_arrival > self.timeout_s:
                    link.fail(f"ReadTimeout: nothing received for {self.timeout_s:g} s", timed_out=True)
