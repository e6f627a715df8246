"""Speech recognition and vision-language chat on `transformers serve` (CPU): the tiny Whisper and LLaVA samples.

Starts `transformers serve --device cpu` over the two samples (devstack/samples), then measures:
- transcription: `validators.transcription_bench` at each concurrency (uploads of a generated WAV clip of each
  length), audio seconds per second and latency;
- vision-language chat: `validators.throughput` streaming chat (text prompts) at each concurrency, and the
  latency of a chat request with and without an image;
- the conformance suite's wall time per task.
Writes docs/benchmarks/modalities.md. On a shared 2-core machine the numbers move by tens of percent between runs.

    python -m benchmarks.bench_modalities [--concurrencies 1 2 4] [--requests 16] [--clips 2 5]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from devstack.net import free_port
from devstack.runtimes import RuntimeProcess, start_hf_serve
from devstack.samples import build_samples
from devstack.samples import expectations as ex
from devstack.samples.build import export_repo
from validators.conformance import run_suite
from validators.conformance_checks.base import Target
from validators.conformance_checks.vision import image_part, red_image
from validators.tasks import SPEECH_RECOGNITION, VISION_CHAT
from validators.throughput import LoadSpec, run_benchmark
from validators.transcription_bench import TranscriptionLoad, run_transcription_benchmark

OUT = Path(__file__).resolve().parent.parent / "docs" / "benchmarks" / "modalities.md"
ROOT = Path(__file__).resolve().parent.parent


def _chat_latency(server: RuntimeProcess, content: object, rounds: int = 5) -> float:
    body = {"model": ex.TINY_LLAVA, "messages": [{"role": "user", "content": content}], "max_tokens": 8}
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        httpx.post(server.base_url + "/chat/completions", json=body, timeout=120).raise_for_status()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrencies", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--clips", type=float, nargs="+", default=[2.0, 5.0])
    args = parser.parse_args()
    samples = build_samples(ROOT / ".cache" / "samples")
    lines = [
        "# Speech recognition and vision-language chat on transformers serve (CPU)",
        "",
        f"`python -m benchmarks.bench_modalities`, {datetime.now(UTC):%Y-%m-%d}, {platform.machine()}, "
        "transformers serve 5.23 in the project's venv (the hf-serve image's version), the tiny random-weight "
        "samples (`curation-samples/tiny-whisper-asr`: 2 + 2 layers, 5 s windows, 24 generated tokens at most; "
        "`curation-samples/tiny-llava-vision`: 2-layer CLIP tower + 2-layer Llama). These measure the serving "
        "path and the harness, not a real model's speed; a shared 2-core machine moves them by tens of percent.",
        "",
    ]
    with tempfile.TemporaryDirectory(prefix="bench-modalities-") as tmp:
        store = samples.store()
        repos = (ex.TINY_WHISPER, ex.TINY_LLAVA)
        models = {r: export_repo(store, r, Path(tmp) / r.replace("/", "--")) for r in repos}
        started = time.perf_counter()
        server = start_hf_serve(models, port=free_port(), workdir=Path(tmp) / "serve")
        lines += [f"Server healthy in {time.perf_counter() - started:.1f} s.", ""]
        try:
            lines += _speech(server, args)
            lines += _vision(server, args)
            lines += _suites(server)
        finally:
            server.stop()
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")


def _speech(server: RuntimeProcess, args: argparse.Namespace) -> list[str]:
    lines = [
        "## Transcription (`/v1/audio/transcriptions`)",
        "",
        "| clip | concurrency | requests | errors | audio s / s | requests / s | e2e p50 | e2e p90 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for clip in args.clips:
        load = TranscriptionLoad(tuple(args.concurrencies), args.requests, 120.0, clip_seconds=clip)
        run_transcription_benchmark(server.base_url, ex.TINY_WHISPER, TranscriptionLoad(max_requests=2))  # warm
        for m in run_transcription_benchmark(server.base_url, ex.TINY_WHISPER, load):
            e2e = m.e2e_s
            lines.append(
                f"| {clip:g} s | {m.concurrency:g} | {m.requests} | {m.errors} | {m.audio_seconds_per_s or 0:.1f} | "
                f"{m.request_throughput:.2f} | {e2e.p50 if e2e else 0:.3f} s | {e2e.p90 if e2e else 0:.3f} s |"
            )
    return [*lines, ""]


def _vision(server: RuntimeProcess, args: argparse.Namespace) -> list[str]:
    question = "What colour is this image?"
    with_image = [{"type": "text", "text": question}, image_part(red_image())]
    plain, image = _chat_latency(server, question), _chat_latency(server, with_image)
    lines = [
        "## Vision-language chat (`/v1/chat/completions`)",
        "",
        f"Median latency of an 8-token answer: text only {plain:.3f} s, with one 48 x 40 PNG (16 image tokens) "
        f"{image:.3f} s.",
        "",
        "Streaming chat benchmark (text prompts of 16 tokens, 8 out), as the validation cells run it:",
        "",
        "| concurrency | requests | errors | output tok / s | TTFT p50 | e2e p50 |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    spec = LoadSpec(
        profile="sweep", concurrencies=tuple(args.concurrencies), max_requests=args.requests, max_duration_s=120,
        input_tokens=16, output_tokens=8,
    )  # fmt: skip
    for m in run_benchmark(server.base_url, ex.TINY_LLAVA, spec):
        ttft, e2e = m.ttft_s, m.e2e_s
        lines.append(
            f"| {m.concurrency:g} | {m.requests} | {m.errors} | {m.output_token_throughput:.1f} | "
            f"{ttft.p50 if ttft else 0:.3f} s | {e2e.p50 if e2e else 0:.3f} s |"
        )
    return [*lines, ""]


def _suites(server: RuntimeProcess) -> list[str]:
    lines = ["## Conformance suite wall time", "", "| task | checks | passed | failed | seconds |"]
    lines.append("| --- | --- | --- | --- | --- |")
    for model, task in ((ex.TINY_WHISPER, SPEECH_RECOGNITION), (ex.TINY_LLAVA, VISION_CHAT)):
        started = time.perf_counter()
        report = run_suite(Target(server.base_url, model, task=task))
        took = time.perf_counter() - started
        passed = sum(1 for c in report.checks if c.status.value == "pass")
        failed = sum(1 for c in report.checks if c.status.value == "fail")
        lines.append(f"| {task} | {len(report.checks)} | {passed} | {failed} | {took:.1f} |")
    return [*lines, ""]


if __name__ == "__main__":
    main()
