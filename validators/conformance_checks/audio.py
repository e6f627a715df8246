"""Speech-recognition checks: `POST /v1/audio/transcriptions` with a multipart upload (OpenAI's Audio API).

The upload is a generated 2 s mono 16 kHz WAV chirp (validators/media.py). A tiny or random-weight model may
transcribe it as any text, so the checks assert the API's shape and semantics, never the words.
"""

from __future__ import annotations

import json
from typing import Any

from openai.types.audio import Transcription, TranscriptionVerbose

from registry.schema import CheckStatus
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
from validators.media import chirp_wav, wav_seconds

PATH = "/audio/transcriptions"
CLIP_SECONDS = 2.0
DURATION_TOLERANCE_S = 0.5
NOT_AUDIO = b"curation conformance: these bytes are not audio in any container format\n" * 8


def _clip() -> bytes:
    return chirp_wav(CLIP_SECONDS)


def transcribe(session: Session, upload: bytes | None = None, **fields: str) -> Exchange:
    """One multipart transcription request of `upload` (the chirp by default); `fields` add form fields."""
    form = {"model": session.target.model, **fields}
    files = {"file": ("speech.wav", _clip() if upload is None else upload, "audio/wav")}
    return session.post_form(PATH, form, files)


def _basic(session: Session) -> Exchange:
    return session.cached("transcription_json", lambda: transcribe(session, response_format="json"))


def transcription(session: Session) -> Outcome:
    exchange = _basic(session)
    body = require_ok(exchange, "transcription")
    validate_model(Transcription, body, exchange, "the transcription")
    if not isinstance(body.get("text"), str):
        return failed("`text` is not a string", exchange.evidence())
    return passed(f"multipart upload answered a Transcription ({len(body['text'])} characters)")


def response_format_text(session: Session) -> Outcome:
    exchange = transcribe(session, response_format="text")
    if exchange.status != 200:
        return failed(f"response_format=text: expected HTTP 200, got {exchange.status}", exchange.evidence())
    if not exchange.content_type.startswith("text/plain"):
        return failed(
            f"response_format=text answered {exchange.content_type or 'no content type'}, not text/plain",
            exchange.evidence(),
        )
    if isinstance(exchange.json_body, dict):
        return failed("response_format=text answered a JSON object, not the bare transcript", exchange.evidence())
    return passed("response_format=text answers the bare transcript as text/plain")


def response_format_verbose_json(session: Session) -> Outcome:
    exchange = transcribe(session, response_format="verbose_json")
    body = require_ok(exchange, "response_format=verbose_json")
    validate_model(TranscriptionVerbose, body, exchange, "the verbose transcription")
    duration = float(body["duration"])
    expected = wav_seconds(_clip())
    if abs(duration - expected) > DURATION_TOLERANCE_S:
        return failed(f"duration {duration:g} s, the upload is {expected:g} s", exchange.evidence())
    return passed(f"verbose_json with language {body['language']!r} and duration {duration:g} s")


def language(session: Session) -> Outcome:
    accepted = transcribe(session, language="en")
    body = require_ok(accepted, "language=en")
    validate_model(Transcription, body, accepted, "the transcription with language=en")
    rejected = transcribe(session, language="zz-not-a-language")
    outcome = error_envelope(rejected, "an invalid language code")
    if outcome.status is not CheckStatus.PASS:
        return outcome
    return passed("language=en is accepted and an invalid code is rejected with the error envelope")


def missing_file(session: Session) -> Outcome:
    exchange = session.post_form(PATH, {"model": session.target.model})
    return error_envelope(exchange, "a request without a file")


def corrupt_file(session: Session) -> Outcome:
    return error_envelope(transcribe(session, NOT_AUDIO), "a file that is not audio")


def stream(session: Session) -> Outcome:
    exchange = session.post_form(
        PATH, {"model": session.target.model, "stream": "true"}, {"file": ("speech.wav", _clip(), "audio/wav")}
    )
    if exchange.status != 200:
        return failed(f"stream=true: expected HTTP 200, got {exchange.status}", exchange.evidence())
    events = [line[5:].strip() for line in exchange.text.splitlines() if line.startswith("data:")]
    kinds = [_event_type(payload) for payload in events]
    if not events or kinds[-1] != "transcript.text.done":
        return failed(
            f"the stream's events are {kinds[:5]}..., not transcript.text.delta events ending in transcript.text.done",
            exchange.evidence(),
        )
    return passed(f"{len(events)} events ending in transcript.text.done")


def _event_type(payload: str) -> str | None:
    try:
        value: Any = json.loads(payload)
    except json.JSONDecodeError:
        return None
    return str(value.get("type")) if isinstance(value, dict) else None
