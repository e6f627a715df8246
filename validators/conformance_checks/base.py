"""The machinery every conformance check uses: the target, HTTP exchanges with evidence, SSE parsing,
outcomes."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from registry.schema import CheckStatus, ConformanceCheck

EXCERPT_CHARS = 600


@dataclass(frozen=True)
class Target:
    """What the suite talks to: an OpenAI-compatible base URL (ending in /v1) and the served model id."""

    base_url: str
    model: str
    task: str = "chat"
    tool_call_parser: str | None = None
    timeout_s: float = 120.0
    max_tokens: int = 6
    api_key: str | None = None

    @property
    def endpoint(self) -> str:
        """The API the task is served on: `/chat/completions` (chat, vision-language chat), `/embeddings` or
        `/audio/transcriptions`."""
        return TASK_ENDPOINTS.get(self.task, "/chat/completions")


TASK_ENDPOINTS = {"embeddings": "/embeddings", "automatic-speech-recognition": "/audio/transcriptions"}


@dataclass
class Exchange:
    """One request and what came back (status, body text, parsed JSON or SSE events)."""

    method: str
    path: str
    request: dict[str, Any] | None
    status: int
    text: str
    content_type: str = ""
    json_body: Any = None
    lines: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)  # the payload of every `data:` line, in order

    def evidence(self, **extra: Any) -> dict[str, Any]:
        return {
            "request": {"method": self.method, "path": self.path, "body": self.request},
            "status": self.status,
            "response_excerpt": self.text[:EXCERPT_CHARS],
            **extra,
        }

    def chunks(self) -> list[dict[str, Any]]:
        """The JSON objects of the stream's data events ([DONE] and unparsable payloads left out)."""
        out: list[dict[str, Any]] = []
        for payload in self.events:
            if payload.strip() == "[DONE]":
                continue
            try:
                value = json.loads(payload)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                out.append(value)
        return out


class Outcome(Exception):
    """Raised by a check to end with a status (also returned normally)."""

    def __init__(self, status: CheckStatus, detail: str, evidence: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.evidence = evidence or {}


def passed(detail: str, evidence: dict[str, Any] | None = None) -> Outcome:
    return Outcome(CheckStatus.PASS, detail, evidence)


def failed(detail: str, evidence: dict[str, Any] | None = None) -> Outcome:
    return Outcome(CheckStatus.FAIL, detail, evidence)


def skipped(detail: str, evidence: dict[str, Any] | None = None) -> Outcome:
    return Outcome(CheckStatus.SKIP, detail, evidence)


class Session:
    """An HTTP session for one suite run; remembers every exchange (for the error-inside-200 check) and caches
    shared requests (one stream serves several streaming checks)."""

    def __init__(self, target: Target, client: httpx.Client) -> None:
        self.target = target
        self.client = client
        self.exchanges: list[Exchange] = []
        self._cache: dict[str, Exchange] = {}

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.target.api_key}"} if self.target.api_key else {}

    def get(self, path: str) -> Exchange:
        response = _fresh_on_stale(lambda: self.client.get(self.target.base_url + path, headers=self._headers()))
        exchange = Exchange(
            "GET", path, None, response.status_code, response.text, response.headers.get("content-type", "")
        )
        exchange.json_body = _parse_json(response.text)
        self.exchanges.append(exchange)
        return exchange

    def post(self, path: str, body: dict[str, Any]) -> Exchange:
        url = self.target.base_url + path
        response = _fresh_on_stale(lambda: self.client.post(url, json=body, headers=self._headers()))
        exchange = Exchange(
            "POST", path, body, response.status_code, response.text, response.headers.get("content-type", "")
        )
        exchange.json_body = _parse_json(response.text)
        self.exchanges.append(exchange)
        return exchange

    def post_form(
        self, path: str, fields: dict[str, str], files: dict[str, tuple[str, bytes, str]] | None = None
    ) -> Exchange:
        """A multipart/form-data POST (file uploads); the evidence records each file's name, type and size."""
        url = self.target.base_url + path
        response = _fresh_on_stale(
            lambda: self.client.post(url, data=fields, files=files or None, headers=self._headers())
        )
        shown: dict[str, Any] = dict(fields)
        for field_name, (filename, data, media_type) in (files or {}).items():
            shown[field_name] = {"filename": filename, "content_type": media_type, "bytes": len(data)}
        exchange = Exchange(
            "POST", path, shown, response.status_code, response.text, response.headers.get("content-type", "")
        )
        exchange.json_body = _parse_json(response.text)
        self.exchanges.append(exchange)
        return exchange

    def stream(self, path: str, body: dict[str, Any]) -> Exchange:
        """POST with streaming; keeps every raw line and the payload of each `data:` field."""

        def read() -> tuple[list[str], int, str]:
            url = self.target.base_url + path
            with self.client.stream("POST", url, json=body, headers=self._headers()) as response:
                return list(response.iter_lines()), response.status_code, response.headers.get("content-type", "")

        lines, status, content_type = _fresh_on_stale(read)
        text = "\n".join(lines)
        events = [line[5:].lstrip(" ") for line in lines if line.startswith("data:")]
        exchange = Exchange("POST", path, body, status, text, content_type, _parse_json(text), lines, events)
        self.exchanges.append(exchange)
        return exchange

    def cached(self, key: str, make: Callable[[], Exchange]) -> Exchange:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    # ----------------------------------------------------------------------------------------- shared
    # requests

    def chat_body(self, content: str = "Count from 1 to 50, one number per line.", **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.target.model,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": self.target.max_tokens,
            "temperature": 0,
            "seed": 1234,
        }
        body.update(extra)
        return body

    def basic_chat(self) -> Exchange:
        return self.cached("basic_chat", lambda: self.post("/chat/completions", self.chat_body()))

    def basic_stream(self) -> Exchange:
        return self.cached("basic_stream", lambda: self.stream("/chat/completions", self.chat_body(stream=True)))

    def usage_stream(self) -> Exchange:
        body = self.chat_body(stream=True, stream_options={"include_usage": True})
        return self.cached("usage_stream", lambda: self.stream("/chat/completions", body))


_T = TypeVar("_T")
_STALE_CONNECTION = (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)


def _fresh_on_stale(call: Callable[[], _T]) -> _T:
    """Run `call`; once more when the pooled connection was reset. Servers that close a keep-alive connection
    after an error answer (transformers serve after an HTTP 500) would otherwise fail the next check for it;
    a request the server itself resets fails the second time too."""
    try:
        return call()
    except _STALE_CONNECTION:
        return call()


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, ValueError):
        return None


def validate_model(model: type[BaseModel], value: Any, exchange: Exchange, what: str) -> BaseModel:
    """Validate `value` against an `openai` typed model; a failure is a check failure with the pydantic
    errors."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        errors = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]]
        raise failed(
            f"{what} does not match openai.{model.__module__.split('.')[-1]}.{model.__name__}: " + "; ".join(errors),
            exchange.evidence(validation_errors=errors),
        ) from exc


def require_ok(exchange: Exchange, what: str) -> Any:
    """The JSON body of a 200 answer, or a failure naming the status."""
    if exchange.status != 200:
        raise failed(f"{what}: expected HTTP 200, got {exchange.status}", exchange.evidence())
    if exchange.json_body is None and not exchange.events:
        raise failed(f"{what}: the 200 answer is not JSON", exchange.evidence())
    return exchange.json_body


def choice_chunks(chunks: list[dict[str, Any]]) -> Iterator[tuple[int, dict[str, Any]]]:
    for position, chunk in enumerate(chunks):
        if chunk.get("choices"):
            yield position, chunk


def unsupported_by_4xx(exchange: Exchange, feature: str) -> None:
    """A runtime that rejects an optional feature with a 4xx declares it unsupported: the check is skipped."""
    if 400 <= exchange.status < 500:
        raise skipped(
            f"the runtime rejects {feature} with HTTP {exchange.status} (declared unsupported)",
            exchange.evidence(),
        )


CheckFn = Callable[[Session], Outcome]


@dataclass(frozen=True)
class CheckSpec:
    name: str
    version: int
    tasks: frozenset[str]
    description: str
    run: CheckFn


def run_check(spec: CheckSpec, session: Session) -> ConformanceCheck:
    """Run one check; an HTTP failure (timeout, refused) is a failure of that check with its evidence."""
    try:
        outcome = spec.run(session)
    except Outcome as raised:
        outcome = raised
    except httpx.HTTPError as exc:
        outcome = failed(f"request failed: {type(exc).__name__}: {exc}", {"error": str(exc)[:EXCERPT_CHARS]})
    except (KeyError, TypeError, IndexError, AttributeError, ValueError) as exc:
        # An answer of an unexpected shape the check did not anticipate: still a failure, with what broke.
        outcome = failed(
            f"unexpected response shape: {type(exc).__name__}: {exc}", {"error": repr(exc)[:EXCERPT_CHARS]}
        )
    return ConformanceCheck(
        name=spec.name,
        version=spec.version,
        status=outcome.status,
        detail=outcome.detail,
        evidence=outcome.evidence,
    )
