"""Streaming (SSE) checks for chat completions: framing, chunk shape, ids, roles, finish, [DONE], usage
chunks."""

from __future__ import annotations

import itertools

from openai.types.chat import ChatCompletionChunk

from validators.conformance_checks.base import (
    Exchange,
    Outcome,
    Session,
    choice_chunks,
    failed,
    passed,
    require_ok,
    validate_model,
)


def _stream(session: Session) -> Exchange:
    exchange = session.basic_stream()
    require_ok(exchange, "streamed chat completion")
    if not exchange.events:
        raise failed("the stream has no data: events", exchange.evidence())
    return exchange


def sse_framing(session: Session) -> Outcome:
    exchange = _stream(session)
    if not exchange.content_type.startswith("text/event-stream"):
        return failed(f"content-type {exchange.content_type!r}, expected text/event-stream", exchange.evidence())
    bad = [line for line in exchange.lines if line and not line.startswith(("data:", ":", "event:", "id:", "retry:"))]
    if bad:
        return failed(f"{len(bad)} lines are not SSE fields, e.g. {bad[0][:120]!r}", exchange.evidence())
    data_lines = [i for i, line in enumerate(exchange.lines) if line.startswith("data:")]
    for first, second in itertools.pairwise(data_lines):
        if "" not in exchange.lines[first + 1 : second]:
            return failed("two data: events are not separated by a blank line", exchange.evidence())
    return passed(f"{len(exchange.events)} data: events, blank-line separated")


def chunk_shape(session: Session) -> Outcome:
    exchange = _stream(session)
    chunks = exchange.chunks()
    payloads = [e for e in exchange.events if e.strip() != "[DONE]"]
    if not chunks or len(chunks) != len(payloads):
        return failed(f"{len(payloads) - len(chunks)} stream events are not JSON objects", exchange.evidence())
    for chunk in chunks:
        validate_model(ChatCompletionChunk, chunk, exchange, "a stream chunk")
        if chunk.get("object") != "chat.completion.chunk":
            return failed(
                f"chunk object {chunk.get('object')!r}, expected 'chat.completion.chunk'", exchange.evidence()
            )
    return passed(f"{len(chunks)} chunks validate as openai ChatCompletionChunk")


def same_id(session: Session) -> Outcome:
    exchange = _stream(session)
    ids = {chunk.get("id") for chunk in exchange.chunks()}
    if len(ids) != 1 or None in ids:
        return failed(f"chunks carry {len(ids)} different ids: {sorted(map(str, ids))[:4]}", exchange.evidence())
    return passed("every chunk has the same id")


def role_first_only(session: Session) -> Outcome:
    exchange = _stream(session)
    deltas = [
        (pos, choice.get("delta") or {})
        for pos, chunk in choice_chunks(exchange.chunks())
        for choice in chunk["choices"]
    ]
    if not deltas or deltas[0][1].get("role") != "assistant":
        return failed("the first delta does not carry role 'assistant'", exchange.evidence())
    later = [pos for pos, delta in deltas[1:] if "role" in delta]
    if later:
        return failed(f"role repeated in {len(later)} later deltas (chunks {later[:5]})", exchange.evidence())
    return passed("role only in the first delta")


def final_finish_reason(session: Session) -> Outcome:
    exchange = _stream(session)
    choices = [choice for _, chunk in choice_chunks(exchange.chunks()) for choice in chunk["choices"]]
    if not choices or not choices[-1].get("finish_reason"):
        return failed("the last choice chunk has no finish_reason", exchange.evidence())
    early = [c.get("finish_reason") for c in choices[:-1] if c.get("finish_reason")]
    if early:
        return failed(f"finish_reason set before the last chunk: {early}", exchange.evidence())
    return passed(f"final chunk finish_reason {choices[-1]['finish_reason']!r}")


def done_last(session: Session) -> Outcome:
    exchange = _stream(session)
    if exchange.events[-1].strip() != "[DONE]":
        return failed(
            "the stream does not end with 'data: [DONE]'",
            exchange.evidence(last_event=exchange.events[-1][:300]),
        )
    if sum(1 for e in exchange.events if e.strip() == "[DONE]") != 1:
        return failed("'data: [DONE]' appears more than once", exchange.evidence())
    return passed("'data: [DONE]' is the last event")


def include_usage(session: Session) -> Outcome:
    exchange = session.usage_stream()
    require_ok(exchange, "stream with include_usage")
    chunks = exchange.chunks()
    with_usage = [(i, c) for i, c in enumerate(chunks) if c.get("usage")]
    if len(with_usage) != 1:
        return failed(
            f"include_usage gave {len(with_usage)} chunks with usage, expected exactly one",
            exchange.evidence(),
        )
    position, chunk = with_usage[0]
    if chunk.get("choices") != []:
        return failed(
            "the usage chunk has non-empty choices (usage must come in its own chunk with choices: [])",
            exchange.evidence(usage_chunk=chunk),
        )
    if position != len(chunks) - 1:
        return failed("the usage chunk is not the last chunk", exchange.evidence())
    usage = chunk["usage"]
    if usage.get("total_tokens") != usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0):
        return failed(f"streamed usage does not add up: {usage}", exchange.evidence(usage=usage))
    validate_model(ChatCompletionChunk, chunk, exchange, "the usage chunk")
    return passed("exactly one usage chunk with choices: [] at the end")


def no_usage_unasked(session: Session) -> Outcome:
    exchange = _stream(session)
    with_usage = [c for c in exchange.chunks() if c.get("usage")]
    if with_usage:
        return failed(
            f"{len(with_usage)} chunks carry usage though stream_options.include_usage was not set",
            exchange.evidence(usage_chunk=with_usage[0]),
        )
    return passed("no usage when not asked")
