"""Embeddings checks: response shape, dimensions, float vs base64, batch order, the `dimensions` parameter."""

from __future__ import annotations

import base64
import math
import struct

from openai.types import CreateEmbeddingResponse

from validators.conformance_checks.base import (
    Exchange,
    Outcome,
    Session,
    failed,
    passed,
    require_ok,
    unsupported_by_4xx,
    validate_model,
)

_INPUTS = [
    "The cat sat on the mat.",
    "Quarterly revenue grew by four percent.",
    "Photosynthesis needs light.",
]


def _embed(session: Session, key: str, **extra: object) -> Exchange:
    body = {"model": session.target.model, "input": extra.pop("input", _INPUTS), **extra}
    return session.cached(key, lambda: session.post("/embeddings", body))


def _vectors(exchange: Exchange) -> list[list[float]]:
    data = sorted(exchange.json_body["data"], key=lambda item: item["index"])
    return [list(item["embedding"]) for item in data]


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def embeddings_shape(session: Session) -> Outcome:
    exchange = _embed(session, "batch")
    body = require_ok(exchange, "embeddings")
    validate_model(CreateEmbeddingResponse, body, exchange, "the embeddings response")
    if body.get("object") != "list" or any(item.get("object") != "embedding" for item in body["data"]):
        return failed("object fields are not 'list' / 'embedding'", exchange.evidence())
    usage = body.get("usage") or {}
    if not usage.get("prompt_tokens") or usage.get("total_tokens") != usage.get("prompt_tokens"):
        return failed(f"usage is not prompt_tokens == total_tokens > 0: {usage}", exchange.evidence())
    return passed("validates as openai CreateEmbeddingResponse")


def embeddings_dimensions(session: Session) -> Outcome:
    exchange = _embed(session, "batch")
    require_ok(exchange, "embeddings")
    vectors = _vectors(exchange)
    sizes = {len(v) for v in vectors}
    if len(vectors) != len(_INPUTS) or len(sizes) != 1 or 0 in sizes:
        return failed(f"{len(vectors)} vectors of sizes {sorted(sizes)} for {len(_INPUTS)} inputs", exchange.evidence())
    if not all(math.isfinite(x) for v in vectors for x in v):
        return failed("non-finite values in the vectors", exchange.evidence())
    return passed(f"{len(vectors)} vectors of dimension {sizes.pop()}")


def embeddings_batch_order(session: Session) -> Outcome:
    batch = _embed(session, "batch")
    require_ok(batch, "embeddings")
    indexes = [item.get("index") for item in batch.json_body["data"]]
    if indexes != list(range(len(_INPUTS))):
        return failed(f"data indexes {indexes}, expected 0..{len(_INPUTS) - 1} in order", batch.evidence())
    vectors = _vectors(batch)
    for position in (0, len(_INPUTS) - 1):
        single = _embed(session, f"single-{position}", input=_INPUTS[position])
        require_ok(single, "single embedding")
        similarity = _cosine(vectors[position], _vectors(single)[0])
        if similarity < 0.999:
            return failed(
                f"batch item {position} differs from the same input embedded alone (cosine {similarity:.4f})",
                single.evidence(cosine=similarity),
            )
    return passed("batch items come back in input order and match single requests")


def embeddings_base64(session: Session) -> Outcome:
    floats = _embed(session, "batch")
    require_ok(floats, "embeddings")
    exchange = _embed(session, "base64", encoding_format="base64")
    unsupported_by_4xx(exchange, "encoding_format=base64")
    body = require_ok(exchange, "base64 embeddings")
    decoded: list[list[float]] = []
    for item in sorted(body["data"], key=lambda item: item["index"]):
        if not isinstance(item.get("embedding"), str):
            return failed("encoding_format=base64 returned a non-string embedding", exchange.evidence())
        raw = base64.b64decode(item["embedding"])
        decoded.append(list(struct.unpack(f"<{len(raw) // 4}f", raw)))
    reference = _vectors(floats)
    if [len(v) for v in decoded] != [len(v) for v in reference]:
        return failed(
            "base64 vectors do not decode (float32 little-endian) to the float vectors' size",
            exchange.evidence(),
        )
    worst = min(_cosine(a, b) for a, b in zip(decoded, reference, strict=True))
    if worst < 0.999:
        return failed(f"base64 vectors differ from the float ones (cosine {worst:.4f})", exchange.evidence())
    return passed("base64 decodes to the float vectors")


def embeddings_dimensions_param(session: Session) -> Outcome:
    full = _embed(session, "batch")
    require_ok(full, "embeddings")
    size = len(_vectors(full)[0])
    wanted = max(1, size // 2)
    exchange = _embed(session, "dimensions", dimensions=wanted)
    unsupported_by_4xx(exchange, f"dimensions={wanted}")
    require_ok(exchange, "embeddings with dimensions")
    sizes = {len(v) for v in _vectors(exchange)}
    if sizes != {wanted}:
        return failed(
            f"dimensions={wanted} returned vectors of size {sorted(sizes)} (silently ignored)",
            exchange.evidence(),
        )
    return passed(f"dimensions={wanted} honoured")
