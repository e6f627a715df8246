"""Chat-completion checks: non-streaming shape and semantics, optional features (n, logprobs, response_format,
tools). Each function is one named check; the registry of names is in `validators.conformance`."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
from openai.types.chat import ChatCompletion

from validators.conformance_checks.base import (
    Exchange,
    Outcome,
    Session,
    failed,
    passed,
    require_ok,
    skipped,
    unsupported_by_4xx,
    validate_model,
)

_JSON_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
    "required": ["city", "population"],
    "additionalProperties": False,
}


def _content(exchange: Exchange, index: int = 0) -> str:
    message = exchange.json_body["choices"][index]["message"]
    return str(message.get("content") or "")


def chat_shape(session: Session) -> Outcome:
    exchange = session.basic_chat()
    body = require_ok(exchange, "chat completion")
    validate_model(ChatCompletion, body, exchange, "the chat completion")
    if body.get("object") != "chat.completion":
        return failed(f"object is {body.get('object')!r}, expected 'chat.completion'", exchange.evidence())
    if not isinstance(body.get("created"), int):
        return failed("created is not an integer unix timestamp", exchange.evidence())
    if not body.get("choices"):
        return failed("no choices", exchange.evidence())
    return passed("validates as openai ChatCompletion")


def chat_model_echo(session: Session) -> Outcome:
    exchange = session.basic_chat()
    body = require_ok(exchange, "chat completion")
    if body.get("model") != session.target.model:
        return failed(
            f"model is {body.get('model')!r}, expected the requested id {session.target.model!r}",
            exchange.evidence(),
        )
    return passed("the response names the requested model id")


def chat_role(session: Session) -> Outcome:
    exchange = session.basic_chat()
    body = require_ok(exchange, "chat completion")
    roles = [c.get("message", {}).get("role") for c in body["choices"]]
    if any(role != "assistant" for role in roles):
        return failed(f"message roles {roles}, expected 'assistant'", exchange.evidence())
    return passed("role is 'assistant'")


def chat_usage(session: Session) -> Outcome:
    exchange = session.basic_chat()
    body = require_ok(exchange, "chat completion")
    usage = body.get("usage")
    if not isinstance(usage, dict):
        return failed("no usage object", exchange.evidence())
    prompt, completion, total = (usage.get(k) for k in ("prompt_tokens", "completion_tokens", "total_tokens"))
    if not all(isinstance(v, int) for v in (prompt, completion, total)):
        return failed(f"usage counts are not integers: {usage}", exchange.evidence())
    assert isinstance(prompt, int) and isinstance(completion, int) and isinstance(total, int)
    if prompt <= 0 or completion <= 0 or total != prompt + completion:
        return failed(f"usage does not add up: {usage}", exchange.evidence(usage=usage))
    if completion > session.target.max_tokens:
        return failed(f"completion_tokens {completion} > max_tokens {session.target.max_tokens}", exchange.evidence())
    return passed(f"usage sums: {prompt} + {completion} = {total}")


def chat_finish_length(session: Session) -> Outcome:
    exchange = session.basic_chat()
    body = require_ok(exchange, "chat completion")
    choice = body["choices"][0]
    completion = (body.get("usage") or {}).get("completion_tokens")
    if choice.get("finish_reason") != "length":
        return failed(
            f"finish_reason is {choice.get('finish_reason')!r} after max_tokens={session.target.max_tokens}"
            " on a prompt that needs more; expected 'length'",
            exchange.evidence(),
        )
    if completion is not None and completion != session.target.max_tokens:
        return failed(f"finish_reason 'length' but completion_tokens={completion}", exchange.evidence())
    return passed("finish_reason 'length' at max_tokens")


def chat_stop(session: Session) -> Outcome:
    reference = session.cached(
        "stop_reference", lambda: session.post("/chat/completions", session.chat_body(max_tokens=10))
    )
    require_ok(reference, "reference completion")
    text = _content(reference)
    candidates = [
        i
        for i in range(2, len(text) - 1)
        if not any(ch.isspace() for ch in text[i : i + 2]) and text.find(text[i : i + 2]) == i
    ]
    if not candidates:
        return skipped("the reference answer is too short to pick a stop sequence from", reference.evidence())
    at = candidates[len(candidates) // 2]
    stop = text[at : at + 2]
    exchange = session.post("/chat/completions", session.chat_body(max_tokens=10, stop=[stop]))
    body = require_ok(exchange, "completion with stop")
    content = _content(exchange)
    evidence = exchange.evidence(stop=stop, reference=text)
    if stop in content:
        return failed(f"the output contains the stop sequence {stop!r}", evidence)
    if body["choices"][0].get("finish_reason") != "stop":
        return failed(f"finish_reason {body['choices'][0].get('finish_reason')!r} at a stop sequence", evidence)
    if not text.startswith(content.rstrip()):
        return failed("the output with stop is not a prefix of the same greedy output without it", evidence)
    return passed(f"generation ends before stop sequence {stop!r}")


def chat_n(session: Session) -> Outcome:
    exchange = session.post("/chat/completions", session.chat_body(n=2, temperature=1.0, seed=7, max_tokens=3))
    unsupported_by_4xx(exchange, "n=2")
    body = require_ok(exchange, "completion with n=2")
    indexes = sorted(c.get("index") for c in body["choices"])
    if indexes != [0, 1]:
        return failed(f"n=2 returned choices with indexes {indexes} (silently ignored)", exchange.evidence())
    return passed("n=2 returns two choices")


def chat_seed(session: Session) -> Outcome:
    body = session.chat_body(content="Write one sentence about the sea.", max_tokens=8, seed=42, temperature=0)
    first = session.post("/chat/completions", body)
    second = session.post("/chat/completions", body)
    require_ok(first, "first seeded completion")
    require_ok(second, "second seeded completion")
    if _content(first) != _content(second):
        return failed(
            "two identical requests at temperature 0 with the same seed differ",
            second.evidence(first=_content(first), second=_content(second)),
        )
    return passed("identical output for identical seeded requests at temperature 0")


def chat_logprobs(session: Session) -> Outcome:
    exchange = session.post("/chat/completions", session.chat_body(logprobs=True, top_logprobs=2, max_tokens=3))
    unsupported_by_4xx(exchange, "logprobs")
    body = require_ok(exchange, "completion with logprobs")
    logprobs = body["choices"][0].get("logprobs")
    content = (logprobs or {}).get("content") if isinstance(logprobs, dict) else None
    if not content:
        return failed(
            "logprobs=true answered 200 without choices[0].logprobs.content (silently ignored)",
            exchange.evidence(),
        )
    if any(len(token.get("top_logprobs") or []) != 2 for token in content):
        return failed("top_logprobs=2 not honoured on every token", exchange.evidence())
    validate_model(ChatCompletion, body, exchange, "the completion with logprobs")
    return passed(f"{len(content)} tokens with logprobs and 2 top_logprobs each")


def _json_content(exchange: Exchange) -> Any:
    text = _content(exchange)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise failed(
            f"response_format asked for JSON but the content does not parse: {exc}", exchange.evidence()
        ) from exc


def chat_json_object(session: Session) -> Outcome:
    body = session.chat_body(
        content="Return a JSON object describing Paris with keys city and population.",
        response_format={"type": "json_object"},
        max_tokens=24,
    )
    exchange = session.post("/chat/completions", body)
    unsupported_by_4xx(exchange, "response_format json_object")
    require_ok(exchange, "json_object completion")
    value = _json_content(exchange)
    if not isinstance(value, dict):
        return failed("json_object output is not a JSON object", exchange.evidence())
    return passed("json_object output parses as an object")


def chat_json_schema(session: Session) -> Outcome:
    body = session.chat_body(
        content="Give the city and population of Paris as JSON.",
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "city", "schema": _JSON_SCHEMA, "strict": True},
        },
        max_tokens=24,
    )
    exchange = session.post("/chat/completions", body)
    unsupported_by_4xx(exchange, "response_format json_schema")
    require_ok(exchange, "json_schema completion")
    value = _json_content(exchange)
    try:
        jsonschema.validate(value, _JSON_SCHEMA)
    except jsonschema.ValidationError as exc:
        return failed(f"json_schema output does not validate: {exc.message}", exchange.evidence())
    return passed("json_schema output validates against the schema")


_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def chat_tool_calls(session: Session) -> Outcome:
    if not session.target.tool_call_parser:
        return skipped("the template declares no tool-call parser")
    body = session.chat_body(
        content="What is the weather in Paris? Use the tool.",
        tools=[_TOOL],
        tool_choice="required",
        max_tokens=64,
        stream=True,
    )
    exchange = session.stream("/chat/completions", body)
    require_ok(exchange, "streamed tool call")
    arguments: dict[int, str] = {}
    names: dict[int, str] = {}
    finish = None
    for chunk in exchange.chunks():
        for choice in chunk.get("choices") or []:
            finish = choice.get("finish_reason") or finish
            for call in (choice.get("delta") or {}).get("tool_calls") or []:
                index = int(call.get("index", 0))
                function = call.get("function") or {}
                names[index] = names.get(index, "") + str(function.get("name") or "")
                arguments[index] = arguments.get(index, "") + str(function.get("arguments") or "")
    if not arguments:
        return failed("no tool_calls deltas in the stream", exchange.evidence())
    for index, text in arguments.items():
        try:
            json.loads(text)
        except json.JSONDecodeError:
            return failed(
                f"tool call {index}: argument deltas concatenate to invalid JSON {text!r}",
                exchange.evidence(),
            )
    if names.get(0) != "get_weather":
        return failed(f"tool call names {names}, expected get_weather", exchange.evidence())
    if finish != "tool_calls":
        return failed(f"finish_reason {finish!r}, expected 'tool_calls'", exchange.evidence())
    return passed("streamed tool-call argument deltas concatenate to valid JSON")
