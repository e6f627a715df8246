"""Vision-language chat checks: images as `image_url` content parts of chat messages (OpenAI's vision input).

Images are generated PNGs sent as data URLs (validators/media.py), never fetched from anywhere. A random-weight
model may answer anything, so the checks assert the API's shapes and that the image reached the model: a
prompt with an image counts more prompt tokens than the same text alone.
"""

from __future__ import annotations

from typing import Any

from openai.types.chat import ChatCompletion, ChatCompletionChunk

from validators.conformance_checks.base import (
    Exchange,
    Outcome,
    Session,
    failed,
    passed,
    require_ok,
    validate_model,
)
from validators.conformance_checks.errors import error_envelope
from validators.media import data_url, solid_png

QUESTION = "What colour is this image?"
NOT_AN_IMAGE = b"curation conformance: plain text pretending to be a PNG image\n"


def image_part(url: str, **extra: Any) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url, **extra}}


def red_image() -> str:
    return data_url("image/png", solid_png(48, 40, (200, 30, 30)))


def _ask(session: Session, content: Any, **extra: Any) -> Exchange:
    body = session.chat_body(**extra)
    body["messages"] = [{"role": "user", "content": content}]
    return session.post("/chat/completions", body)


def _text_only(session: Session) -> Exchange:
    return session.cached("vision_text_only", lambda: _ask(session, QUESTION))


def _with_image(session: Session) -> Exchange:
    parts = [{"type": "text", "text": QUESTION}, image_part(red_image())]
    return session.cached("vision_with_image", lambda: _ask(session, parts))


def _prompt_tokens(exchange: Exchange) -> int | None:
    usage = exchange.json_body.get("usage") if isinstance(exchange.json_body, dict) else None
    value = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    return value if isinstance(value, int) else None


def image_data_url(session: Session) -> Outcome:
    exchange = _with_image(session)
    body = require_ok(exchange, "chat with an image")
    validate_model(ChatCompletion, body, exchange, "the chat completion with an image")
    with_image, text_only = _prompt_tokens(exchange), _prompt_tokens(_text_only(session))
    if with_image is None or text_only is None:
        return failed("usage.prompt_tokens is missing: cannot tell whether the image was read", exchange.evidence())
    if with_image <= text_only:
        return failed(
            f"the image added no prompt tokens ({with_image} with it, {text_only} without): it was dropped",
            exchange.evidence(),
        )
    return passed(f"the data-URL image was read ({with_image - text_only} image prompt tokens)")


def content_parts(session: Session) -> Outcome:
    parts = _ask(session, [{"type": "text", "text": QUESTION}])
    body = require_ok(parts, "text content parts")
    validate_model(ChatCompletion, body, parts, "the chat completion with text parts")
    plain = _text_only(session)
    require_ok(plain, "plain text content")
    if _prompt_tokens(parts) != _prompt_tokens(plain):
        return failed(
            f"a text part counts {_prompt_tokens(parts)} prompt tokens, the same plain string {_prompt_tokens(plain)}",
            parts.evidence(),
        )
    return passed("a list of text parts is the same prompt as the plain string")


def image_detail(session: Session) -> Outcome:
    exchange = _ask(session, [{"type": "text", "text": QUESTION}, image_part(red_image(), detail="low")])
    body = require_ok(exchange, "an image with detail=low")
    validate_model(ChatCompletion, body, exchange, "the chat completion with detail=low")
    return passed("image_url.detail is accepted")


def multiple_images(session: Session) -> Outcome:
    blue = data_url("image/png", solid_png(40, 48, (30, 30, 200)))
    parts = [{"type": "text", "text": "Compare the images."}, image_part(red_image()), image_part(blue)]
    exchange = _ask(session, parts)
    body = require_ok(exchange, "two images in one message")
    validate_model(ChatCompletion, body, exchange, "the chat completion with two images")
    one = _prompt_tokens(_with_image(session))
    two = _prompt_tokens(exchange)
    if one is None or two is None or two <= one:
        return failed(f"two images count {two} prompt tokens, one image {one}: one was dropped", exchange.evidence())
    return passed(f"two images read ({two} prompt tokens, one image {one})")


def non_image_rejected(session: Session) -> Outcome:
    bogus = data_url("image/png", NOT_AN_IMAGE)
    exchange = _ask(session, [{"type": "text", "text": QUESTION}, image_part(bogus)], max_tokens=2)
    return error_envelope(exchange, "an image_url whose data is not an image")


def image_stream(session: Session) -> Outcome:
    parts = [{"type": "text", "text": QUESTION}, image_part(red_image())]
    body = session.chat_body(stream=True)
    body["messages"] = [{"role": "user", "content": parts}]
    exchange = session.stream("/chat/completions", body)
    if exchange.status != 200 or not exchange.content_type.startswith("text/event-stream"):
        return failed(
            f"image + text streaming answered HTTP {exchange.status} {exchange.content_type}", exchange.evidence()
        )
    chunks = exchange.chunks()
    for chunk in chunks:
        validate_model(ChatCompletionChunk, chunk, exchange, "a streamed chunk")
    text = "".join(
        str((choice.get("delta") or {}).get("content") or "") for chunk in chunks for choice in chunk.get("choices", [])
    )
    finishes = [c.get("finish_reason") for chunk in chunks for c in chunk.get("choices", []) if c.get("finish_reason")]
    if not text:
        return failed("the image + text stream carried no content", exchange.evidence())
    if not finishes:
        return failed("no chunk carries a finish_reason", exchange.evidence())
    return passed(f"{len(chunks)} chunks, {len(text)} characters, finish_reason {finishes[-1]!r}")
