"""A streaming server whose timing is known exactly: the ground truth for load generators (tests, benchmarks).

    python -m devstack.ground_truth --port P [--ttft 0.2] [--itl 0.02] [--tokens 32] [--model ground-truth]

OpenAI-compatible enough for `validators.throughput` and GuideLLM: `GET /v1/models`, `POST /v1/chat/completions`
and `POST /v1/completions` (`stream: true` as server-sent events with a usage chunk when
`stream_options.include_usage` is set and `data: [DONE]`; `stream: false` answers once the schedule ends).
Every request gets `max_tokens` (or `max_completion_tokens`, else `--tokens`) content tokens on a fixed
schedule, whatever the concurrency: token i is due at `start + ttft + i * itl` on the monotonic clock, `start`
being the moment the request's last byte arrived. A request may set its own timing with
`"x_schedule": {"ttft_s": .., "itl_s": ..}` in its body (tests use it for slow streams). The finish chunk, the
usage chunk and `[DONE]` go out with the last token, so a request's true end-to-end latency is
`ttft + (n - 1) * itl`.

The server measures how late it actually wrote each token against its due time (`GET /stats`: median / p99 /
max lateness of every token and of first tokens, requests, aborts, peak concurrency; `POST /stats/reset`
answers them and starts a new window): a measurement taken against it is only a measurement of the client while
the server says it was on time.

It runs plain non-blocking sockets on an asyncio loop (no framework) whose timers are precise to microseconds;
a request's `start` is the kernel's receive time of its last byte (SO_TIMESTAMPNS, Linux), so a busy server
shifts nothing and shows up as lateness; `/stats` also gives the delay between a request's arrival and its
reading. Every response's bytes are built once per request and one timer per due token writes every token that
is due: a few microseconds of CPU per token. It binds 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import select
import selectors
import socket
import struct
import sys
import threading
import time
from array import array
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from devstack.net import LOOPBACK, wait_for_http
from devstack.process import ManagedProcess, ProcessError, start_process

_MAX_HEADER_BYTES = 64 * 1024
_MAX_BODY_BYTES = 16 * 1024 * 1024
_MAX_LATENESS_SAMPLES = 4_000_000
_SO_TIMESTAMPNS: int = getattr(socket, "SO_TIMESTAMPNS", 35)
_ANCILLARY = socket.CMSG_SPACE(16)
_TIMESPEC = struct.Struct("qq")
_READ_SIZE = 256 * 1024
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 413: "Payload Too Large"}


@dataclass(frozen=True)
class Schedule:
    """The timing every streamed request gets."""

    ttft_s: float = 0.2
    itl_s: float = 0.02
    tokens: int = 32
    model: str = "ground-truth"

    def e2e_s(self, tokens: int | None = None) -> float:
        """True end-to-end latency of a request of `tokens` output tokens (default: `self.tokens`)."""
        return self.ttft_s + ((tokens or self.tokens) - 1) * self.itl_s


class ServerStats:
    """Lateness of every written token (seconds after its due time) and request counters since the last reset."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.lateness = array("d")
        self.first_lateness = array("d")
        self.read_delay = array("d")
        self.requests = 0
        self.completed = 0
        self.aborted = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.since = time.time()

    def started(self, read_delay: float) -> None:
        if len(self.read_delay) < _MAX_LATENESS_SAMPLES:
            self.read_delay.append(read_delay)
        self.requests += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def ended(self, *, aborted: bool) -> None:
        self.in_flight -= 1
        if aborted:
            self.aborted += 1
        else:
            self.completed += 1

    def late(self, seconds: float, *, first: bool) -> None:
        if len(self.lateness) < _MAX_LATENESS_SAMPLES:
            self.lateness.append(seconds)
            if first:
                self.first_lateness.append(seconds)

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "completed": self.completed,
            "aborted": self.aborted,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "tokens_written": len(self.lateness),
            "lateness_ms": _quantiles_ms(self.lateness),
            "first_token_lateness_ms": _quantiles_ms(self.first_lateness),
            "request_read_delay_ms": _quantiles_ms(self.read_delay),
            "window_s": round(time.time() - self.since, 3),
        }


def _quantiles_ms(samples: array[float]) -> dict[str, float | None]:
    values = sorted(samples)

    def at(q: float) -> float | None:
        return round(values[min(len(values) - 1, int(q * len(values)))] * 1e3, 4) if values else None

    return {"median": at(0.5), "p99": at(0.99), "max": at(1.0)}


def _event(data: bytes) -> bytes:
    """One server-sent event, framed as one chunk of the chunked transfer encoding."""
    framed = b"data: " + data + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(framed), framed)


def _sse(value: Any) -> bytes:
    return _event(json.dumps(value, separators=(",", ":")).encode())


_DONE = _event(b"[DONE]")
_END = b"0\r\n\r\n"


class _Request:
    """What one completion request asks for."""

    def __init__(self, path: str, body: dict[str, Any], schedule: Schedule) -> None:
        self.chat = path.endswith("/chat/completions")
        self.stream = bool(body.get("stream"))
        options = body.get("stream_options")
        self.include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        limit = body.get("max_completion_tokens") or body.get("max_tokens") or schedule.tokens
        self.tokens = max(1, int(limit))
        self.model = str(body.get("model") or schedule.model)
        timing = body.get("x_schedule")
        timing = timing if isinstance(timing, dict) else {}
        self.ttft_s = min(3600.0, max(0.0, float(timing.get("ttft_s", schedule.ttft_s))))
        self.itl_s = min(3600.0, max(0.0, float(timing.get("itl_s", schedule.itl_s))))
        if self.chat:
            messages = body.get("messages") or []
            text = " ".join(str(m.get("content") or "") for m in messages if isinstance(m, dict))
        else:
            text = str(body.get("prompt") or "")
        self.prompt_tokens = len(text.split())

    @property
    def e2e_s(self) -> float:
        return self.ttft_s + (self.tokens - 1) * self.itl_s

    def usage(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.tokens,
            "total_tokens": self.prompt_tokens + self.tokens,
        }

    def chunk(self, index: int, *, token: bool, finish: str | None = None, usage: bool = False) -> bytes:
        base: dict[str, Any] = {"id": "cmpl-gt", "created": 0, "model": self.model}
        if usage:
            choices: list[dict[str, Any]] = []
        elif self.chat:
            delta = {"role": "assistant", "content": "tok"} if index == 0 else ({"content": "tok"} if token else {})
            choices = [{"index": 0, "delta": delta, "finish_reason": finish}]
        else:
            choices = [{"index": 0, "text": "tok" if token else "", "logprobs": None, "finish_reason": finish}]
        value = {**base, "object": "chat.completion.chunk" if self.chat else "text_completion", "choices": choices}
        if usage:
            value["usage"] = self.usage()
        return _sse(value)

    def whole(self) -> dict[str, Any]:
        text = "tok" * self.tokens
        choice: dict[str, Any] = (
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}
            if self.chat
            else {"index": 0, "text": text, "logprobs": None, "finish_reason": "length"}
        )
        return {
            "id": "cmpl-gt",
            "object": "chat.completion" if self.chat else "text_completion",
            "created": 0,
            "model": self.model,
            "choices": [choice],
            "usage": self.usage(),
        }


class _Stream:
    """Writes one request's tokens at their due times; one timer per due token, catching up when late."""

    def __init__(self, conn: _Connection, request: _Request, start: float) -> None:
        self.conn = conn
        self.request = request
        self.first_due = start + request.ttft_s
        self.itl = request.itl_s
        self.index = 0
        self.first = request.chunk(0, token=True)
        self.token = request.chunk(1, token=True)
        tail = request.chunk(request.tokens, token=False, finish="length")
        if request.include_usage:
            tail += request.chunk(request.tokens, token=False, usage=True)
        self.tail = tail + _DONE + _END
        self.handle: asyncio.TimerHandle | None = conn.loop.call_at(self.first_due, self.tick)

    def due(self, index: int) -> float:
        return self.first_due + index * self.itl

    def tick(self) -> None:
        now = time.monotonic()
        parts: list[bytes] = []
        stats = self.conn.stats
        while self.index < self.request.tokens and self.due(self.index) <= now:
            stats.late(now - self.due(self.index), first=self.index == 0)
            parts.append(self.first if self.index == 0 else self.token)
            self.index += 1
        if self.index == self.request.tokens:
            parts.append(self.tail)
        self.conn.write(b"".join(parts))
        if self.index < self.request.tokens:
            self.handle = self.conn.loop.call_at(self.due(self.index), self.tick)
        else:
            self.handle = None
            self.conn.finished()

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


class _Connection:
    """One HTTP/1.1 keep-alive connection; requests are answered one after the other.

    The socket is read with recvmsg and SO_TIMESTAMPNS: a request's schedule starts when its last byte reached
    the kernel, not when this loop got to it, so a busy server shows up as lateness instead of shifting the truth.
    """

    def __init__(self, server: GroundTruthServer, sock: socket.socket) -> None:
        self.server = server
        self.schedule = server.schedule
        self.stats = server.stats
        self.loop = asyncio.get_running_loop()
        self.sock = sock
        self.fd = sock.fileno()
        self.buffer = b""
        self.arrived = 0.0
        self.outbox = bytearray()
        self.open = True
        self.close_when_sent = False
        self.stream: _Stream | None = None
        self.pending: asyncio.TimerHandle | None = None
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        self.loop.add_reader(self.fd, self.readable)

    def readable(self) -> None:
        try:
            data, ancillary, _flags, _address = self.sock.recvmsg(_READ_SIZE, _ANCILLARY)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        if not data:
            self.close()
            return
        now = time.monotonic()
        self.arrived = now
        if ancillary:  # the kernel's wall-clock receive time, moved onto the monotonic clock
            seconds, nanoseconds = _TIMESPEC.unpack_from(ancillary[0][2])
            self.arrived = now - max(0.0, time.time() - (seconds + nanoseconds * 1e-9))
        self.buffer += data
        self.parse()

    def write(self, data: bytes) -> None:
        if not self.open:
            return
        if not self.outbox:
            try:
                sent = self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self.close()
                return
            data = data[sent:]
            if data:
                self.loop.add_writer(self.fd, self.writable)
        self.outbox += data

    def writable(self) -> None:
        try:
            sent = self.sock.send(self.outbox)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        del self.outbox[:sent]
        if not self.outbox:
            self.loop.remove_writer(self.fd)
            if self.close_when_sent:
                self.close()

    def close(self) -> None:
        if not self.open:
            return
        self.open = False
        self.loop.remove_reader(self.fd)
        self.loop.remove_writer(self.fd)
        self.sock.close()
        if self.pending is not None:
            self.pending.cancel()
            self.pending = None
            self.stats.ended(aborted=True)
        if self.stream is not None:
            self.stream.cancel()
            self.stream = None
            self.stats.ended(aborted=True)

    def finished(self) -> None:
        self.stream = None
        self.pending = None
        self.stats.ended(aborted=False)
        self.parse()

    def parse(self) -> None:
        if self.stream is not None or self.pending is not None or not self.open:
            return
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0:
            if len(self.buffer) > _MAX_HEADER_BYTES:
                self.respond(413, {"error": "request head too large"}, close=True)
            return
        lines = self.buffer[:head_end].decode("latin-1").split("\r\n")
        method, _, rest = lines[0].partition(" ")
        path = rest.partition(" ")[0].partition("?")[0]
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self.respond(400, {"error": "send the body with Content-Length"}, close=True)
            return
        length = int(headers.get("content-length") or 0)
        if length > _MAX_BODY_BYTES:
            self.respond(413, {"error": "body too large"}, close=True)
            return
        if len(self.buffer) < head_end + 4 + length:
            return
        body = self.buffer[head_end + 4 : head_end + 4 + length]
        self.buffer = self.buffer[head_end + 4 + length :]
        self.route(method, path, body, close=headers.get("connection", "").lower() == "close")

    def route(self, method: str, path: str, body: bytes, *, close: bool) -> None:
        get: dict[str, Callable[[], Any]] = {
            "/v1/models": self.server.models,
            "/health": lambda: {"status": "ok"},
            "/stats": self.server.summary,
        }
        if method == "GET" and path in get:
            self.respond(200, get[path](), close=close)
        elif method == "POST" and path == "/stats/reset":
            ended = self.server.summary()
            self.stats.reset()
            self.respond(200, ended, close=close)
        elif path in ("/v1/chat/completions", "/v1/completions"):
            if method != "POST":
                self.respond(405, {"error": {"message": "use POST"}}, close=close)
                return
            try:
                parsed = json.loads(body or b"{}")
                request = _Request(path, parsed, self.schedule)
            except (ValueError, TypeError, AttributeError) as exc:
                self.respond(400, {"error": {"message": f"bad request body: {exc}"}}, close=close)
                return
            self.complete(request)
        else:
            self.respond(404, {"error": {"message": f"no route {method} {path}"}}, close=close)

    def complete(self, request: _Request) -> None:
        start = self.arrived
        self.stats.started(read_delay=time.monotonic() - start)
        if request.stream:
            head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
            self.write(head + b"transfer-encoding: chunked\r\nconnection: keep-alive\r\n\r\n")
            self.stream = _Stream(self, request, start)
            return

        def answer() -> None:
            self.pending = None
            self.stats.ended(aborted=False)
            self.respond(200, request.whole(), close=False)

        self.pending = self.loop.call_at(start + request.e2e_s, answer)

    def respond(self, status: int, value: Any, *, close: bool) -> None:
        body = json.dumps(value).encode()
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: {'close' if close else 'keep-alive'}\r\n\r\n"
        )
        self.write(head.encode() + body)
        if close:
            self.close_when_sent = True
            if not self.outbox:
                self.close()
        else:
            self.parse()


class _PreciseEpollSelector(selectors.EpollSelector):
    """epoll waits in whole milliseconds rounded up, so every timer would fire up to 1 ms late, drifting in a
    sawtooth (gaps of 20.2 ms and 19.2 ms instead of 20). Wait on the epoll descriptor itself with select(),
    which takes microseconds, then collect the ready events without blocking."""

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is not None and timeout > 0:
            select.select([self.fileno()], [], [], timeout)
            timeout = 0
        return super().select(timeout)


def _precise_loop() -> asyncio.AbstractEventLoop:
    return asyncio.SelectorEventLoop(_PreciseEpollSelector())


class GroundTruthServer:
    """The server's state; `serve()` runs it on the current event loop, `in_thread()` on a thread of its own."""

    def __init__(self, schedule: Schedule, port: int, host: str = LOOPBACK) -> None:
        self.schedule = schedule
        self.port = port
        self.host = host
        self.stats = ServerStats()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def models(self) -> dict[str, Any]:
        model = {"id": self.schedule.model, "object": "model", "created": 0, "owned_by": "ground-truth"}
        return {"object": "list", "data": [model]}

    def summary(self) -> dict[str, Any]:
        return {"schedule": asdict(self.schedule), **self.stats.summary()}

    async def serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        listener = socket.create_server((self.host, self.port), backlog=4096, reuse_port=False)
        listener.setblocking(False)
        connections: list[_Connection] = []

        def accept() -> None:
            while True:
                try:
                    sock, _ = listener.accept()
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    return  # e.g. out of file descriptors: the client sees a refused or stalled connect
                connections[:] = [c for c in connections if c.open]
                connections.append(_Connection(self, sock))

        self._loop.add_reader(listener.fileno(), accept)
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            self._loop.remove_reader(listener.fileno())
            listener.close()
            for connection in connections:
                connection.close()

    def run(self) -> None:
        """Serve on a new event loop with precise timers until `close()`."""
        with asyncio.Runner(loop_factory=_precise_loop) as runner:
            runner.run(self.serve())

    def in_thread(self) -> GroundTruthServer:
        """Start serving on a daemon thread (for tests that share the process); stop with `close()`."""
        self._thread = threading.Thread(target=self.run, daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=10):
            raise RuntimeError(f"the ground-truth server did not start on {self.host}:{self.port}")
        return self

    def close(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> GroundTruthServer:
        return self.in_thread()

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_ground_truth(schedule: Schedule, *, port: int, log_path: Path) -> ManagedProcess:
    """The server in a process of its own (so that no client shares its event loop); stop it with `.stop()`."""
    argv = [sys.executable, "-m", "devstack.ground_truth", "--port", str(port), "--ttft", str(schedule.ttft_s)]
    argv += ["--itl", str(schedule.itl_s), "--tokens", str(schedule.tokens), "--model", schedule.model]
    process = start_process("ground-truth", argv, log_path=log_path, cwd=Path(__file__).resolve().parents[1])
    try:
        wait_for_http(f"http://{LOOPBACK}:{port}/health", timeout=30)
    except TimeoutError as exc:
        process.stop()
        raise ProcessError(f"the ground-truth server did not start: {exc}; see {log_path}") from exc
    return process


def server_stats(root_url: str, *, reset: bool = False) -> dict[str, Any]:
    """`GET /stats` of a running server (`root_url` without /v1); with `reset`, the window that ended and a new
    one starts."""
    response = httpx.post(f"{root_url}/stats/reset", timeout=10) if reset else httpx.get(f"{root_url}/stats")
    response.raise_for_status()
    stats: dict[str, Any] = response.json()
    return stats


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ttft", type=float, default=Schedule.ttft_s, help="seconds to the first token")
    parser.add_argument("--itl", type=float, default=Schedule.itl_s, help="seconds between tokens")
    parser.add_argument("--tokens", type=int, default=Schedule.tokens, help="tokens when a request sets no max")
    parser.add_argument("--model", default=Schedule.model)
    args = parser.parse_args(argv)
    schedule = Schedule(ttft_s=args.ttft, itl_s=args.itl, tokens=args.tokens, model=args.model)
    server = GroundTruthServer(schedule, args.port)
    print(f"ground-truth server on {server.base_url}: {schedule}", flush=True)
    server.run()


if __name__ == "__main__":
    main()
