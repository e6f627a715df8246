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

OBSERVED: dict[tuple[str, str], Observation] = {
    ("hf-serve", "5.23.0"): _HF_SERVE_5_23,
}


def observed(runtime: str, version: str) -> Observation:
    """The recorded behaviour of `runtime` at `version`; the test fails with what to do when there is none."""
    try:
        return OBSERVED[(runtime, version)]
    except KeyError:
        pytest.fail(
            f"no recorded conformance behaviour for {runtime} {version}: run the suite against it, add what it "
            "passes and fails to tests/validators/observed.py and review validation.deviations in curation.toml"
        )
