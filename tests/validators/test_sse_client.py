"""The benchmark's HTTP client: response framing however the bytes are split, event times from the read that
completed each event, keep-alive reuse and its stale-connection retry, timeouts, and unreachable servers."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from devstack.ground_truth import GroundTruthServer, Schedule
from devstack.net import free_port
from validators.errors import BenchmarkError
from validators.sse_client import Exchange, StreamClient, sse_events

SCHEDULE = Schedule(ttft_s=0.05, itl_s=0.005, tokens=4, model="truth")
EVENTS = [b'{"n":0}', b'{"n":1,"text":"a\\nb"}', b"[DONE]"]


def _chunked(events: list[bytes]) -> bytes:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\n"
    body = b""
    for event in events:
        framed = b"data: " + event + b"\n\n"
        body += b"%x\r\n%s\r\n" % (len(framed), framed)
    return head + body + b"0\r\n\r\n"


def _feed_split(response: bytes, cuts: list[int]) -> tuple[Exchange, list[int]]:
    """Feed `response` in pieces cut at `cuts`; piece i arrives at time i. Returns the exchange and the index of
    the piece that completed it."""
    exchange = Exchange(start=-1.0)
    bounds = [0, *sorted(set(c for c in cuts if 0 < c < len(response))), len(response)]
    completed = []
    for index, (a, b) in enumerate(pairwise(bounds)):
        if exchange.feed(float(index), response[a:b]):
            completed.append(index)
    return exchange, completed


@given(st.lists(st.integers(min_value=1, max_value=400), max_size=12))
def test_chunked_response_however_split(cuts: list[int]) -> None:
    response = _chunked(EVENTS)
    exchange, completed = _feed_split(response, cuts)
    pieces = len(exchange.read_times)
    assert completed == [pieces - 1]  # complete exactly when the last byte arrives, not before
    assert exchange.status == 200 and exchange.keep_alive and exchange.end == float(pieces - 1)
    events = list(sse_events(exchange))
    assert [data for _, data in events] == EVENTS
    # Each event is timed by the piece that carried its last byte (the blank line that ends it).
    for (arrived, data), position in zip(events, [response.index(e) + len(e) + 1 for e in EVENTS], strict=True):
        ends = exchange.read_ends
        assert ends[int(arrived)] > position and (arrived == 0 or ends[int(arrived) - 1] <= position), data


def test_length_and_close_delimited_bodies() -> None:
    body = b'{"error": "no such model"}'
    sized = b"HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    exchange, completed = _feed_split(sized, [10, 40])
    assert completed == [2] and exchange.status == 404 and exchange.body == body

    closing = Exchange()
    assert not closing.feed(1.0, b"HTTP/1.0 200 OK\r\n\r\ndata: x\n\n")
    assert closing.eof() and closing.end == 1.0 and not closing.keep_alive
    assert list(sse_events(closing)) == [(1.0, b"x")]

    with pytest.raises(BenchmarkError, match="chunk size"):
        Exchange().feed(0.0, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
    with pytest.raises(BenchmarkError, match="not an HTTP response"):
        Exchange().feed(0.0, b"SSH-2.0-OpenSSH\r\n\r\n")


@pytest.fixture(scope="module")
def server() -> Iterator[GroundTruthServer]:
    with GroundTruthServer(SCHEDULE, free_port()) as running:
        yield running


def _body(**extra: object) -> bytes:
    return json.dumps({"messages": [], "max_tokens": 3, "stream": True, **extra}).encode()


def test_streams_are_timed_by_arrival_and_connections_reused(server: GroundTruthServer) -> None:
    async def scenario() -> tuple[list[Exchange], int]:
        async with StreamClient(server.base_url + "/chat/completions", timeout_s=30) as client:
            exchanges = [await client.post(_body()) for _ in range(3)]
            return exchanges, len(client._idle)

    exchanges, idle = asyncio.run(scenario())
    assert idle == 1  # three requests in sequence, one keep-alive connection
    for exchange in exchanges:
        assert exchange.error is None and exchange.status == 200
        events = list(sse_events(exchange))
        assert events[-1][1] == b"[DONE]" and len(events) == 3 + 2  # 3 tokens, finish, [DONE]
        first_token = events[0][0]
        assert first_token - exchange.start >= SCHEDULE.ttft_s  # the server never writes a token early
        assert exchange.end is not None and exchange.end - exchange.start >= SCHEDULE.ttft_s + 2 * SCHEDULE.itl_s
        assert all(lag >= 0 for lag in exchange.read_lags)
        assert [t for t, _ in events] == sorted(t for t, _ in events)


def test_timeouts_and_unreachable_servers_are_errors(server: GroundTruthServer) -> None:
    async def scenario() -> tuple[Exchange, Exchange]:
        async with StreamClient(server.base_url + "/chat/completions", timeout_s=0.3) as client:
            slow = await client.post(_body(x_schedule={"ttft_s": 30}))
        async with StreamClient(f"http://127.0.0.1:{free_port()}/v1/chat/completions", timeout_s=5) as client:
            refused = await client.post(_body())
        return slow, refused

    slow, refused = asyncio.run(scenario())
    assert slow.timed_out and slow.error is not None and slow.error.startswith("ReadTimeout")
    assert refused.error is not None and refused.error.startswith("ConnectError") and not refused.timed_out
    with pytest.raises(BenchmarkError, match="not an http"):
        StreamClient("ftp://example/v1")


def test_a_kept_alive_connection_the_server_closed_is_retried_once_on_a_new_one() -> None:
    """A server that says keep-alive but closes every connection after its response (an idle timeout)."""
    connections = 0
    body = b"data: [DONE]\n\n"
    response = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        writer.write(response)
        await writer.drain()
        writer.close()

    async def scenario() -> list[Exchange]:
        listener = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        async with listener, StreamClient(f"http://127.0.0.1:{port}/v1/chat/completions") as client:
            first = await client.post(b"{}")
            await asyncio.sleep(0.1)  # the server has closed the idle connection by now
            return [first, await client.post(b"{}")]

    exchanges = asyncio.run(scenario())
    assert [e.error for e in exchanges] == [None, None]
    assert [list(sse_events(e)) for e in exchanges][1][0][1] == b"[DONE]"
    assert connections == 2


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, written as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def test_https_streams_through_the_tls_transport(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = _self_signed(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the client's default context trusts it
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            writer.write(_chunked(EVENTS))
            await writer.drain()

    async def scenario() -> tuple[list[Exchange], int]:
        listener = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_context)
        port = listener.sockets[0].getsockname()[1]
        async with listener, StreamClient(f"https://127.0.0.1:{port}/v1/chat/completions") as client:
            exchanges = [await client.post(b"{}") for _ in range(2)]
            idle = len(client._idle)
            listener.close()
            return exchanges, idle

    exchanges, idle = asyncio.run(scenario())
    assert idle == 1  # kept alive over TLS too
    for exchange in exchanges:
        assert exchange.error is None and exchange.status == 200
        assert [data for _, data in sse_events(exchange)] == EVENTS
        assert exchange.read_lags and set(exchange.read_lags) == {0.0}  # timed by the loop: no lag to report
