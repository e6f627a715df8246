"""OpenAI-API conformance suite: named, versioned checks against any OpenAI-compatible base URL.

`run_suite(Target(base_url, model, task))` runs the checks of the task (`chat`, `embeddings`,
`automatic-speech-recognition` or `image-text-to-text`: vision-language chat runs every chat check plus the
vision ones) in order and returns a `ConformanceReport`: each check passes, fails or is skipped, with evidence
(the request and an excerpt of the
offending response). Responses are validated against the `openai` package's typed models. A runtime that
rejects an
optional feature (n, logprobs, response_format, base64, dimensions) with a 4xx declares it unsupported:
skipped. One
that silently ignores it fails. `errors.no_error_in_200` scans every exchange of the run, so it runs last.

Render with `report_markdown(report)` / `report.model_dump_json()`; `publish_artifact(report)` adds a Prefect
markdown
artifact when called inside a flow or task run (and does nothing outside one).
"""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from registry.artifacts import artifact_key, cell, code
from registry.schema import CheckStatus, ConformanceReport
from validators.conformance_checks import audio, chat, embeddings, errors, listing, streaming, vision
from validators.conformance_checks.base import CheckSpec, Session, Target, run_check
from validators.errors import ConformanceError
from validators.tasks import CHAT, EMBEDDINGS, SPEECH_RECOGNITION, VISION_CHAT

SUITE = "openai-conformance"
SUITE_VERSION = "1.1.0"
TASKS = (CHAT, EMBEDDINGS, SPEECH_RECOGNITION, VISION_CHAT)

_CHAT = frozenset({CHAT, VISION_CHAT})
_VISION = frozenset({VISION_CHAT})
_EMB = frozenset({EMBEDDINGS})
_ASR = frozenset({SPEECH_RECOGNITION})
_BOTH = _CHAT | _EMB
_ALL = _BOTH | _ASR

CHECKS: tuple[CheckSpec, ...] = (
    CheckSpec("models.listing", 1, _ALL, "GET /models validates and lists the served id", listing.models_listing),
    CheckSpec("chat.shape", 1, _CHAT, "non-streaming answer validates as ChatCompletion", chat.chat_shape),
    CheckSpec("chat.model_echo", 1, _CHAT, "the answer names the requested model id", chat.chat_model_echo),
    CheckSpec("chat.role", 1, _CHAT, "message role is assistant", chat.chat_role),
    CheckSpec("chat.usage", 1, _CHAT, "usage: prompt + completion = total", chat.chat_usage),
    CheckSpec("chat.finish_length", 1, _CHAT, "finish_reason=length at max_tokens", chat.chat_finish_length),
    CheckSpec("chat.stop", 1, _CHAT, "stop sequences end generation before them", chat.chat_stop),
    CheckSpec("chat.n", 1, _CHAT, "n=2 returns two choices", chat.chat_n),
    CheckSpec("chat.seed", 1, _CHAT, "same seed at temperature 0 gives the same output", chat.chat_seed),
    CheckSpec("stream.sse_framing", 1, _CHAT, "text/event-stream with data: events", streaming.sse_framing),
    CheckSpec("stream.chunk_shape", 1, _CHAT, "chunks validate as ChatCompletionChunk", streaming.chunk_shape),
    CheckSpec("stream.same_id", 1, _CHAT, "the same id on every chunk", streaming.same_id),
    CheckSpec("stream.role_first_only", 1, _CHAT, "role only in the first delta", streaming.role_first_only),
    CheckSpec(
        "stream.final_finish_reason",
        1,
        _CHAT,
        "finish_reason on the final chunk only",
        streaming.final_finish_reason,
    ),
    CheckSpec("stream.done", 1, _CHAT, "data: [DONE] is the last event", streaming.done_last),
    CheckSpec(
        "stream.include_usage",
        1,
        _CHAT,
        "one usage chunk with choices: [] when asked",
        streaming.include_usage,
    ),
    CheckSpec(
        "stream.no_usage_unasked",
        1,
        _CHAT,
        "no usage in the stream when not asked",
        streaming.no_usage_unasked,
    ),
    CheckSpec("chat.logprobs", 1, _CHAT, "logprobs / top_logprobs when supported", chat.chat_logprobs),
    CheckSpec("chat.response_format.json_object", 1, _CHAT, "json_object output parses", chat.chat_json_object),
    CheckSpec("chat.response_format.json_schema", 1, _CHAT, "json_schema output validates", chat.chat_json_schema),
    CheckSpec("chat.tool_calls", 1, _CHAT, "streamed tool-call arguments form valid JSON", chat.chat_tool_calls),
    CheckSpec(
        "embeddings.shape",
        1,
        _EMB,
        "answer validates as CreateEmbeddingResponse",
        embeddings.embeddings_shape,
    ),
    CheckSpec("embeddings.dimensions", 1, _EMB, "one vector per input, same size", embeddings.embeddings_dimensions),
    CheckSpec(
        "embeddings.batch_order",
        1,
        _EMB,
        "batch order and single == batch",
        embeddings.embeddings_batch_order,
    ),
    CheckSpec("embeddings.base64", 1, _EMB, "base64 decodes to the float vectors", embeddings.embeddings_base64),
    CheckSpec("embeddings.dimensions_param", 1, _EMB, "dimensions parameter", embeddings.embeddings_dimensions_param),
    CheckSpec("audio.transcription", 1, _ASR, "multipart upload answers a Transcription (json)", audio.transcription),
    CheckSpec(
        "audio.response_format_text",
        1,
        _ASR,
        "response_format=text answers text/plain",
        audio.response_format_text,
    ),
    CheckSpec(
        "audio.response_format_verbose_json",
        1,
        _ASR,
        "verbose_json validates, duration matches",
        audio.response_format_verbose_json,
    ),
    CheckSpec("audio.language", 1, _ASR, "language=en accepted, an invalid code 4xx", audio.language),
    CheckSpec("audio.missing_file", 1, _ASR, "no file part: 4xx with the envelope", audio.missing_file),
    CheckSpec("audio.corrupt_file", 1, _ASR, "bytes that are not audio: 4xx with the envelope", audio.corrupt_file),
    CheckSpec("audio.stream", 1, _ASR, "stream=true: transcript.text.* events", audio.stream),
    CheckSpec("vision.image_data_url", 1, _VISION, "a data-URL image part is read", vision.image_data_url),
    CheckSpec("vision.content_parts", 1, _VISION, "text parts == the plain string", vision.content_parts),
    CheckSpec("vision.image_detail", 1, _VISION, "image_url.detail is accepted", vision.image_detail),
    CheckSpec("vision.multiple_images", 1, _VISION, "two images in one message", vision.multiple_images),
    CheckSpec(
        "vision.non_image_rejected",
        1,
        _VISION,
        "a non-image data URL: 4xx with the envelope",
        vision.non_image_rejected,
    ),
    CheckSpec("vision.stream", 1, _VISION, "image + text streams valid chunks", vision.image_stream),
    CheckSpec("errors.unknown_model", 1, _ALL, "unknown model: 4xx with the error envelope", errors.unknown_model),
    CheckSpec(
        "errors.malformed_request",
        1,
        _BOTH,
        "malformed body: 4xx with the envelope",
        errors.malformed_request,
    ),
    CheckSpec("errors.invalid_response_format", 1, _CHAT, "invalid json_schema: 4xx", errors.invalid_response_format),
    CheckSpec("errors.no_error_in_200", 1, _ALL, "never an error payload inside a 200", errors.no_error_in_200),
)


def checks_for(task: str, only: Sequence[str] | None = None) -> tuple[CheckSpec, ...]:
    if task not in TASKS:
        raise ConformanceError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    selected = tuple(c for c in CHECKS if task in c.tasks and (only is None or c.name in only))
    if only is not None:
        unknown = set(only) - {c.name for c in CHECKS}
        if unknown:
            raise ConformanceError(f"unknown check(s) {sorted(unknown)}; `curate conformance --list` names them")
    return selected


def run_suite(
    target: Target, *, only: Sequence[str] | None = None, client: httpx.Client | None = None
) -> ConformanceReport:
    """Run the task's checks against `target` (all of them, or the names in `only`, in suite order)."""
    if not target.base_url.startswith(("http://", "https://")):
        raise ConformanceError(f"base URL {target.base_url!r} must start with http:// or https://")
    target = Target(**{**target.__dict__, "base_url": target.base_url.rstrip("/")})
    own = client is None
    http = client or httpx.Client(timeout=httpx.Timeout(target.timeout_s, connect=10.0))
    try:
        session = Session(target, http)
        results = tuple(run_check(spec, session) for spec in checks_for(target.task, only))
    finally:
        if own:
            http.close()
    return ConformanceReport(
        suite=SUITE,
        version=SUITE_VERSION,
        base_url=target.base_url,
        model=target.model,
        task=target.task,
        checks=results,
    )


_ICON = {CheckStatus.PASS: "pass", CheckStatus.FAIL: "**FAIL**", CheckStatus.SKIP: "skip"}


def report_markdown(report: ConformanceReport) -> str:
    counts = {status: sum(1 for c in report.checks if c.status is status) for status in CheckStatus}
    lines = [
        f"# {report.suite} {report.version}: `{report.model}` ({report.task})",
        "",
        f"Base URL `{report.base_url}` - {counts[CheckStatus.PASS]} passed, {counts[CheckStatus.FAIL]} failed, "
        f"{counts[CheckStatus.SKIP]} skipped.",
        "",
        "| check | version | result | detail |",
        "| --- | --- | --- | --- |",
    ]
    for check in report.checks:
        lines.append(f"| {code(check.name)} | {check.version} | {_ICON[check.status]} | {cell(check.detail)} |")
    failures = [c for c in report.checks if c.status is CheckStatus.FAIL and c.evidence]
    if failures:
        lines += ["", "## Evidence of failures", ""]
        for check in failures:
            request = check.evidence.get("request", {})
            excerpt = str(check.evidence.get("response_excerpt", ""))[:300].replace("```", "'''")
            lines += [
                f"### `{check.name}`",
                f"- request: `{request.get('method', '')} {request.get('path', '')}`"
                f" status {check.evidence.get('status')}",
                "",
                "```",
                excerpt,
                "```",
                "",
            ]
    return "\n".join(lines) + "\n"


def publish_artifact(report: ConformanceReport, key: str | None = None) -> bool:
    """Create a Prefect markdown artifact when running inside a flow/task run; returns whether one was
    made."""
    from prefect.artifacts import create_markdown_artifact
    from prefect.context import get_run_context
    from prefect.exceptions import MissingContextError

    try:
        get_run_context()
    except MissingContextError:
        return False
    create_markdown_artifact(
        markdown=report_markdown(report),
        key=key or artifact_key("conformance", report.model, report.task),
        description="OpenAI-API conformance",
    )
    return True
