"""What real runtimes were seen to do under the conformance suite, keyed by runtime and version.

The one place a test states a third-party server's behaviour: when a runtime version changes (a new lock), the
tests that run the real server look up its new version here and fail with one clear message until its
behaviour is recorded, and the policy's accepted deviations (curation.toml) are checked against it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class Observation:
    passes: frozenset[str]
    fails: frozenset[str]
    skips: frozenset[str]


_HF_SERVE_5_23 = Observation(
    passes=frozenset(
        {
            "chat.shape",
            "chat.role",
            "chat.usage",
            "chat.finish_length",
            "chat.seed",
            "stream.sse_framing",
            "stream.chunk_shape",
            "stream.same_id",
            "stream.role_first_only",
            "stream.final_finish_reason",
            "errors.no_error_in_200",
        }
    ),
    fails=frozenset(
        {
            "models.listing",  # float `created`
            "chat.model_echo",  # answers with "<id>@main"
            "chat.stop",  # the stop string is left in the output
            "chat.n",  # n silently ignored
            "stream.done",  # no `data: [DONE]`
            "stream.include_usage",  # usage inside the last choice chunk, not a `choices: []` chunk
            "stream.no_usage_unasked",  # ... and sent even when not asked
            "chat.logprobs",  # silently ignored
            "chat.response_format.json_object",  # ignored: no constrained decoding
            "chat.response_format.json_schema",
            "errors.unknown_model",  # HTTP 500, no envelope
            "errors.malformed_request",  # HTTP 500 / connection reset, no envelope
            "errors.invalid_response_format",  # 200: the schema is not even read
        }
    ),
    skips=frozenset({"chat.tool_calls"}),  # hf-serve templates declare no tool parser
)

# The tiny Whisper sample (devstack/samples/tiny_whisper.py) on /v1/audio/transcriptions.
_HF_SERVE_5_23_SPEECH = Observation(
    passes=frozenset({"audio.transcription", "errors.no_error_in_200"}),
    fails=frozenset(
        {
            "models.listing",  # speech-to-text models are not listed in /v1/models at all
            "audio.response_format_text",  # response_format ignored: always JSON {"text": ...}
            "audio.response_format_verbose_json",  # ... so no language, duration or segments
            "audio.language",  # `language` ignored: an invalid code answers 200
            "audio.missing_file",  # HTTP 500, no envelope
            "audio.corrupt_file",  # HTTP 500 (or a reset connection), no envelope
            "audio.stream",  # streams bare `data: <text>` events, not transcript.text.* JSON
            "errors.unknown_model",  # HTTP 500, no envelope
        }
    ),
    skips=frozenset(),
)

# The tiny LLaVA sample (devstack/samples/tiny_vlm.py): the chat checks plus the vision ones.
_HF_SERVE_5_23_VISION = Observation(
    passes=_HF_SERVE_5_23.passes
    | {
        "vision.image_data_url",
        "vision.content_parts",
        "vision.image_detail",
        "vision.multiple_images",
        "vision.stream",
    },
    # chat.stop fails here with HTTP 500 (stop strings with a multimodal processor); a non-image data URL: 500
    fails=_HF_SERVE_5_23.fails | {"vision.non_image_rejected"},
    skips=_HF_SERVE_5_23.skips,
)

OBSERVED: dict[tuple[str, str, str], Observation] = {
    ("hf-serve", "5.23.0", "chat"): _HF_SERVE_5_23,
    ("hf-serve", "5.23.0", "automatic-speech-recognition"): _HF_SERVE_5_23_SPEECH,
    ("hf-serve", "5.23.0", "image-text-to-text"): _HF_SERVE_5_23_VISION,
}


def observed(runtime: str, version: str, task: str = "chat") -> Observation:
    """The recorded behaviour of `runtime` at `version` for `task`; the test fails with what to do when there is
    none."""
    try:
        return OBSERVED[(runtime, version, task)]
    except KeyError:
        pytest.fail(
            f"no recorded conformance behaviour for {runtime} {version} ({task}): run the suite against it, add "
            "what it passes and fails to tests/validators/observed.py and review validation.deviations in "
            "curation.toml"
        )
