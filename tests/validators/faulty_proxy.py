"""A deliberately faulty OpenAI-API proxy for the conformance tests.

Requests to `http://127.0.0.1:<port>/<mode>/v1/...` are forwarded to the upstream runtime. Mode `clean`
repairs the
known deviations of `transformers serve` (adds `data: [DONE]`, moves usage into its own `choices: []` chunk
only when
`stream_options.include_usage` is set, integer `created` in /models), so the checks those deviations fail pass
through it. Every other mode starts from `clean` and injects exactly one fault:

- `no_done`: the stream ends without `data: [DONE]`
- `role_every_delta`: every delta carries `role: assistant`
- `wrong_usage`: total_tokens is off by one (non-streaming and the usage chunk)
- `error_in_200`: non-streaming chat answers are replaced by an error body with HTTP 200
- `double_usage`: the usage chunk is sent twice
- `shuffled_embeddings`: embeddings come back in reverse order with their original indexes rewritten
- `tool_calls` / `tool_calls_broken`: a streamed request answers with a synthetic tool call whose argument deltas
  concatenate to valid JSON / to truncated JSON (exercises `chat.tool_calls` without a tool-capable runtime)
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

MODES = (
    "clean",
    "no_done",
    "role_every_delta",
    "wrong_usage",
    "error_in_200",
    "double_usage",
    "shuffled_embeddings",
    "tool_calls",
    "tool_calls_broken",
)


def _sse(value: Any) -> str:
    return f"data: {json.dumps(value)}\n\n"


def make_app(upstream: str) -> Starlette:
    """`upstream` is the runtime's root URL (without /v1)."""
    client = httpx.AsyncClient(timeout=300.0)

    async def forward(request: Request) -> Response:
        mode = request.path_params["mode"]
        path = request.path_params["path"]
        url = f"{upstream}/{path}"
        if mode not in MODES:
            return JSONResponse(
                {"error": {"message": f"unknown mode {mode}", "type": "x", "param": None, "code": None}}, 404
            )
        if request.method == "GET":
            upstream_response = await client.get(url)
            data = upstream_response.json()
            for item in data.get("data", []) if isinstance(data, dict) else []:
                if isinstance(item.get("created"), float):
                    item["created"] = int(item["created"])
            return JSONResponse(data, upstream_response.status_code)
        raw = await request.body()
        body = json.loads(raw) if raw else {}
        if isinstance(body, dict) and body.get("stream") and mode in ("tool_calls", "tool_calls_broken"):
            return StreamingResponse(
                _tool_stream(body, broken=mode == "tool_calls_broken"), media_type="text/event-stream"
            )
        if isinstance(body, dict) and body.get("stream"):
            return StreamingResponse(_stream(client, url, raw, body, mode), media_type="text/event-stream")
        upstream_response = await client.post(url, content=raw, headers={"content-type": "application/json"})
        if mode == "error_in_200" and path.endswith("chat/completions") and upstream_response.status_code == 200:
            error = {"message": "upstream failed", "type": "server_error", "param": None, "code": None}
            return JSONResponse({"error": error}, 200)
        try:
            data = upstream_response.json()
        except ValueError:
            return Response(upstream_response.content, upstream_response.status_code)
        if mode == "wrong_usage" and isinstance(data, dict) and isinstance(data.get("usage"), dict):
            data["usage"]["total_tokens"] = data["usage"].get("total_tokens", 0) + 1
        if mode == "shuffled_embeddings" and isinstance(data, dict) and isinstance(data.get("data"), list):
            items = list(reversed(data["data"]))
            for index, item in enumerate(items):
                item["index"] = index
            data["data"] = items
        return JSONResponse(data, upstream_response.status_code)

    return Starlette(routes=[Route("/{mode}/{path:path}", forward, methods=["GET", "POST"])])


async def _tool_stream(body: dict[str, Any], *, broken: bool) -> AsyncIterator[str]:
    """A synthetic streamed tool call (what a runtime with a tool parser sends), split across argument deltas."""
    base = {"id": "chatcmpl-tool", "object": "chat.completion.chunk", "created": 1, "model": body.get("model")}
    pieces = ['{"ci', 'ty": "Pa', 'ris"' if broken else 'ris"}']
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
    yield _sse(base | {"choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [call]}}]})
    for piece in pieces:
        delta = {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}
        yield _sse(base | {"choices": [{"index": 0, "delta": delta}]})
    yield _sse(base | {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    yield "data: [DONE]\n\n"


async def _stream(
    client: httpx.AsyncClient, url: str, raw: bytes, body: dict[str, Any], mode: str
) -> AsyncIterator[str]:
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    usage: dict[str, Any] | None = None
    last: dict[str, Any] = {}
    async with client.stream("POST", url, content=raw, headers={"content-type": "application/json"}) as response:
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            payload = line[5:].strip()
            if payload == "[DONE]":
                continue
            chunk = json.loads(payload)
            usage = chunk.pop("usage", None) or usage
            if mode == "role_every_delta":
                for choice in chunk.get("choices") or []:
                    choice.setdefault("delta", {})["role"] = "assistant"
            last = chunk
            yield _sse(chunk)
    if include_usage and usage is not None:
        if mode == "wrong_usage":
            usage = {**usage, "total_tokens": usage.get("total_tokens", 0) + 1}
        usage_chunk = {k: last.get(k) for k in ("id", "object", "created", "model")} | {
            "choices": [],
            "usage": usage,
        }
        yield _sse(usage_chunk)
        if mode == "double_usage":
            yield _sse(usage_chunk)
    if mode != "no_done":
        yield "data: [DONE]\n\n"


class ThreadServer:
    """Run an ASGI app with uvicorn in a background thread on 127.0.0.1:`port`."""

    def __init__(self, app: Any, port: int) -> None:
        self.port = port
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"server on port {self.port} did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def url(self, prefix: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{prefix}"
