"""Error-handling checks: the OpenAI error envelope with a 4xx for bad requests, never an error inside a
200."""

from __future__ import annotations

import json
from typing import Any

from openai.types.shared import ErrorObject

from validators.conformance_checks.base import Exchange, Outcome, Session, failed, passed, validate_model
from validators.media import chirp_wav


def error_envelope(exchange: Exchange, what: str) -> Outcome:
    """A 4xx with the OpenAI error envelope, or a failure saying what came instead."""
    if not 400 <= exchange.status < 500:
        return failed(f"{what}: expected a 4xx status, got {exchange.status}", exchange.evidence())
    body = exchange.json_body
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return failed(f"{what}: HTTP {exchange.status} without an {{'error': {{...}}}} envelope", exchange.evidence())
    missing = [key for key in ("message", "type", "param", "code") if key not in error]
    if missing:
        return failed(f"{what}: error envelope lacks {missing}", exchange.evidence())
    validate_model(ErrorObject, error, exchange, "the error object")
    return passed(f"{what}: HTTP {exchange.status} with the error envelope")


UNKNOWN_MODEL = "no-such-org/no-such-model-0000"


def unknown_model(session: Session) -> Outcome:
    path = session.target.endpoint
    if path == "/audio/transcriptions":
        upload = {"file": ("speech.wav", chirp_wav(0.5), "audio/wav")}
        return error_envelope(session.post_form(path, {"model": UNKNOWN_MODEL}, upload), "unknown model")
    body: dict[str, Any] = {"model": UNKNOWN_MODEL}
    if path == "/chat/completions":
        body.update(messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    else:
        body.update(input="hi")
    return error_envelope(session.post(path, body), "unknown model")


def malformed_request(session: Session) -> Outcome:
    if session.target.endpoint == "/chat/completions":
        body: dict[str, Any] = {
            "model": session.target.model,
            "messages": "not a list of messages",
            "max_tokens": 2,
        }
        return error_envelope(session.post("/chat/completions", body), "malformed messages")
    return error_envelope(
        session.post("/embeddings", {"model": session.target.model, "input": {"bad": 1}}), "malformed input"
    )


def invalid_response_format(session: Session) -> Outcome:
    body = session.chat_body(
        max_tokens=2,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "x", "schema": {"type": "no-such-type"}},
        },
    )
    return error_envelope(session.post("/chat/completions", body), "invalid response_format schema")


def _error_in(value: Any) -> bool:
    return isinstance(value, dict) and "error" in value and not value.get("choices") and not value.get("data")


def no_error_in_200(session: Session) -> Outcome:
    """Scans every exchange the suite made so far (run it last): an error payload must never come with a
    200."""
    for exchange in session.exchanges:
        if exchange.status != 200:
            continue
        if _error_in(exchange.json_body):
            return failed(f"{exchange.path} answered HTTP 200 with an error body", exchange.evidence())
        for payload in exchange.events:
            try:
                value = json.loads(payload)
            except json.JSONDecodeError:
                continue
            if _error_in(value):
                return failed(
                    f"{exchange.path} streamed an error event inside a 200",
                    exchange.evidence(event=payload[:300]),
                )
    return passed(f"no error payload in {sum(1 for e in session.exchanges if e.status == 200)} HTTP 200 answers")
