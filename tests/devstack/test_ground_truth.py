"""The ground-truth streaming server: OpenAI-shaped answers, a schedule it never runs ahead of, honest stats."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from devstack.ground_truth import GroundTruthServer, Schedule
from devstack.net import free_port
from tests.fixtures.ground_truth import GroundTruthProcess

SCHEDULE = Schedule(ttft_s=0.05, itl_s=0.005, tokens=6, model="truth")


@pytest.fixture(scope="module")
def server() -> Iterator[GroundTruthServer]:
    with GroundTruthServer(SCHEDULE, free_port()) as running:
        yield running


def _stream(url: str, body: dict[str, Any]) -> tuple[list[tuple[float, Any]], float]:
    """(arrival time after the request was sent, parsed data) per event, and the time the stream ended."""
    events: list[tuple[float, Any]] = []
    started = time.monotonic()
    with httpx.stream("POST", url, json={**body, "stream": True}, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        for line in response.iter_lines():
            if line.startswith("data: "):
                payload = line[6:]
                events.append((time.monotonic() - started, payload if payload == "[DONE]" else json.loads(payload)))
    return events, time.monotonic() - started


def test_chat_stream_has_every_token_then_finish_usage_and_done(server: GroundTruthServer) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "one two three"}], "max_tokens": 4}
    events, _ = _stream(server.base_url + "/chat/completions", {**body, "stream_options": {"include_usage": True}})
    data = [value for _, value in events]
    assert data[-1] == "[DONE]"
    content = [c["choices"][0]["delta"].get("content") for c in data[:-3]]
    assert content == ["tok"] * 4
    assert data[0]["choices"][0]["delta"]["role"] == "assistant"
    assert data[-3]["choices"][0]["finish_reason"] == "length"
    assert data[-2]["choices"] == []
    assert data[-2]["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    assert all(c["model"] == "m" and c["object"] == "chat.completion.chunk" for c in data[:-1])

    without_usage, _ = _stream(server.base_url + "/chat/completions", body)
    assert not any(isinstance(v, dict) and "usage" in v for _, v in without_usage)


def test_completions_stream_and_whole_answers(server: GroundTruthServer) -> None:
    events, _ = _stream(server.base_url + "/completions", {"prompt": "a b", "max_tokens": 3})
    texts = [v["choices"][0]["text"] for _, v in events if isinstance(v, dict)]
    assert texts == ["tok", "tok", "tok", ""]
    whole = httpx.post(server.base_url + "/completions", json={"prompt": "a b", "max_tokens": 3}, timeout=30)
    assert whole.json()["choices"][0]["text"] == "toktoktok"
    assert whole.json()["usage"]["completion_tokens"] == 3
    chat = httpx.post(server.base_url + "/chat/completions", json={"messages": []}, timeout=30).json()
    assert chat["choices"][0]["message"]["content"] == "tok" * SCHEDULE.tokens
    assert chat["object"] == "chat.completion"


def test_tokens_never_come_before_they_are_due(server: GroundTruthServer) -> None:
    body = {"messages": [{"role": "user", "content": "x"}], "max_tokens": 5}
    events, ended = _stream(server.base_url + "/chat/completions", body)
    content_times = [t for t, v in events if isinstance(v, dict) and v["choices"] and v["choices"][0]["delta"]]
    assert len(content_times) == 5
    assert content_times[0] >= SCHEDULE.ttft_s
    for index, arrived in enumerate(content_times):
        assert arrived >= SCHEDULE.ttft_s + index * SCHEDULE.itl_s
    assert ended >= SCHEDULE.ttft_s + 4 * SCHEDULE.itl_s

    slow = {**body, "max_tokens": 2, "x_schedule": {"ttft_s": 0.3, "itl_s": 0.1}}
    slow_events, slow_end = _stream(server.base_url + "/chat/completions", slow)
    assert slow_events[0][0] >= 0.3 and slow_end >= 0.4


def test_stats_count_requests_aborts_and_lateness(server: GroundTruthServer) -> None:
    server_root = server.base_url.removesuffix("/v1")
    httpx.post(server_root + "/stats/reset", timeout=10)
    _stream(server.base_url + "/chat/completions", {"messages": [], "max_tokens": 3})
    # A client that goes away mid-stream is an abort, not a completion.
    body = json.dumps({"messages": [], "max_tokens": 3, "stream": True, "x_schedule": {"ttft_s": 30}}).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        assert sock.recv(1024).startswith(b"HTTP/1.1 200 OK")
    deadline = time.monotonic() + 10
    while (stats := httpx.get(server_root + "/stats", timeout=10).json())["aborted"] < 1:
        assert time.monotonic() < deadline, stats
        time.sleep(0.02)
    assert stats["requests"] == 2 and stats["completed"] == 1 and stats["in_flight"] == 0
    assert stats["tokens_written"] == 3 and stats["max_in_flight"] == 1
    lateness = stats["lateness_ms"]
    assert 0 <= lateness["median"] <= lateness["p99"] <= lateness["max"]
    assert 0 <= stats["request_read_delay_ms"]["median"] <= stats["request_read_delay_ms"]["max"]
    assert stats["first_token_lateness_ms"]["max"] <= lateness["max"]  # one first token among the 3 written
    assert stats["schedule"] == {"ttft_s": 0.05, "itl_s": 0.005, "tokens": 6, "model": "truth"}
    ended = httpx.post(server_root + "/stats/reset", timeout=10).json()
    assert ended["requests"] == 2  # the reset answers the window that ended ...
    assert httpx.get(server_root + "/stats", timeout=10).json()["requests"] == 0  # ... and starts a new one


def test_models_and_errors(server: GroundTruthServer) -> None:
    models = httpx.get(server.base_url + "/models", timeout=10).json()
    assert [m["id"] for m in models["data"]] == ["truth"]
    assert httpx.get(server.base_url + "/nope", timeout=10).status_code == 404
    assert httpx.get(server.base_url + "/chat/completions", timeout=10).status_code == 405
    bad = httpx.post(server.base_url + "/chat/completions", content=b"{not json", timeout=10)
    assert bad.status_code == 400 and "bad request body" in bad.json()["error"]["message"]


def test_server_process_from_the_fixture(ground_truth: GroundTruthProcess) -> None:
    stats = ground_truth.stats()
    assert stats["schedule"]["ttft_s"] == ground_truth.schedule.ttft_s
    assert httpx.get(ground_truth.base_url + "/models", timeout=10).json()["data"][0]["id"] == "ground-truth"
    assert ground_truth.process.alive()
