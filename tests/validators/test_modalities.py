"""Speech recognition and vision-language chat against a real `transformers serve` (the hf-serve runtime's
version) serving the tiny Whisper and LLaVA samples: the suite reports exactly what the server does, and the
transcription benchmark is bounded."""

from __future__ import annotations

import importlib.metadata
import time

import pytest

from devstack.runtimes import RuntimeProcess
from registry.schema import CheckStatus, ConformanceReport
from tests.fixtures.runtimes import LLAVA, SMOLLM2, WHISPER
from tests.validators.observed import observed
from validators.conformance import checks_for, report_markdown, run_suite
from validators.conformance_checks.base import Target
from validators.errors import BenchmarkError
from validators.media import chirp_wav, solid_png, wav_seconds
from validators.tasks import SPEECH_RECOGNITION, VISION_CHAT
from validators.transcription_bench import TranscriptionLoad, run_transcription_benchmark

pytestmark = pytest.mark.integration

VERSION = importlib.metadata.version("transformers")


def _outcome(report: ConformanceReport) -> dict[str, set[str]]:
    grouped: dict[str, set[str]] = {status.value: set() for status in CheckStatus}
    for check in report.checks:
        grouped[check.status.value].add(check.name)
    return grouped


@pytest.mark.parametrize(("model", "task"), [(WHISPER, SPEECH_RECOGNITION), (LLAVA, VISION_CHAT)])
def test_suite_reports_exactly_what_transformers_serve_does(media_serve: RuntimeProcess, model: str, task: str) -> None:
    report = run_suite(Target(media_serve.base_url, model, task=task))
    assert [c.name for c in report.checks] == [spec.name for spec in checks_for(task)]
    seen = observed("hf-serve", VERSION, task)
    assert _outcome(report) == {"pass": set(seen.passes), "fail": set(seen.fails), "skip": set(seen.skips)}
    assert report.task == task and f"({task})" in report_markdown(report)


def test_speech_checks_carry_the_multipart_evidence(media_serve: RuntimeProcess) -> None:
    only = ["audio.transcription", "audio.missing_file", "audio.response_format_text"]
    report = run_suite(Target(media_serve.base_url, WHISPER, task=SPEECH_RECOGNITION), only=only)
    by_name = {c.name: c for c in report.checks}
    upload = by_name["audio.transcription"].detail
    assert upload.startswith("multipart upload answered a Transcription")
    missing = by_name["audio.missing_file"].evidence
    assert missing["request"]["body"] == {"model": WHISPER} and missing["status"] == 500
    text = by_name["audio.response_format_text"].evidence["request"]["body"]
    assert text["response_format"] == "text" and text["file"]["content_type"] == "audio/wav"
    assert text["file"]["bytes"] == len(chirp_wav(2.0))  # evidence records the file, never its bytes


def test_an_image_must_reach_the_model(media_serve: RuntimeProcess, hf_serve: RuntimeProcess) -> None:
    only = ["vision.image_data_url", "vision.multiple_images", "vision.stream"]
    report = run_suite(Target(media_serve.base_url, LLAVA, task=VISION_CHAT), only=only)
    assert [c.status for c in report.checks] == [CheckStatus.PASS] * 3, report.checks
    assert "image prompt tokens" in report.checks[0].detail
    # A text-only model drops image parts silently (HTTP 200): the checks see that the image never arrived.
    text_only = run_suite(Target(hf_serve.base_url, SMOLLM2, task=VISION_CHAT), only=only[:1])
    assert [c.status for c in text_only.checks] == [CheckStatus.FAIL]
    assert "it was dropped" in text_only.checks[0].detail


def test_transcription_benchmark_is_bounded(media_serve: RuntimeProcess) -> None:
    load = TranscriptionLoad(concurrencies=(1, 2), max_requests=4, max_duration_s=30, clip_seconds=2.0)
    started = time.monotonic()
    metrics = run_transcription_benchmark(media_serve.base_url, WHISPER, load)
    assert time.monotonic() - started < 2 * (30 + load.grace_s)
    assert [m.concurrency for m in metrics] == [1, 2]
    for level in metrics:
        assert level.profile == "transcription" and level.errors == 0 and 1 <= level.requests <= 4
        assert level.e2e_s is not None and level.e2e_s.p50 > 0
        assert level.audio_seconds_per_s == pytest.approx(level.requests * 2.0 / level.duration_s)
    unknown = run_transcription_benchmark(media_serve.base_url, "no-such-org/model", load.__class__(max_requests=2))
    assert unknown[0].errors == 2 and unknown[0].requests == 0
    with pytest.raises(BenchmarkError, match="clip_seconds"):
        run_transcription_benchmark(media_serve.base_url, WHISPER, TranscriptionLoad(clip_seconds=60))


def test_generated_media_are_deterministic() -> None:
    assert chirp_wav(1.0) == chirp_wav(1.0) and wav_seconds(chirp_wav(1.5)) == 1.5
    png = solid_png(4, 3, (1, 2, 3))
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and png == solid_png(4, 3, (1, 2, 3))
    import io

    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        assert image.size == (4, 3) and image.getpixel((0, 0)) == (1, 2, 3)
