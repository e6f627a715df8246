"""Speech-recognition benchmark: concurrent `POST /v1/audio/transcriptions` uploads of one generated clip.

For each concurrency level, that many workers send the same `clip_seconds` WAV chirp (validators/media.py)
one after another; the run is bounded by `max_requests` AND `max_duration_s` (no request starts after
either; requests still running `grace_s` later are cancelled and left out). Per level (`BenchmarkMetrics`,
profile `transcription`): requests, errors, request throughput, end-to-end latency (mean/p50/p90/p99) and
`audio_seconds_per_s`: seconds of audio transcribed per second of wall time (the real-time factor's inverse).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx

from registry.schema import BenchmarkMetrics
from validators.errors import BenchmarkError
from validators.media import chirp_wav, wav_seconds
from validators.throughput import latency_stats

PROFILE = "transcription"


@dataclass(frozen=True)
class TranscriptionLoad:
    concurrencies: tuple[int, ...] = (1,)
    max_requests: int = 8
    max_duration_s: float = 60.0
    grace_s: float = 30.0
    clip_seconds: float = 5.0
    timeout_s: float = 120.0

    def validate(self) -> None:
        if self.max_requests < 1 or self.max_duration_s <= 0:
            raise BenchmarkError("max_requests must be >= 1 and max_duration_s > 0: every run is bounded by both")
        if not self.concurrencies or any(c < 1 for c in self.concurrencies):
            raise BenchmarkError("concurrency levels must be >= 1")
        if not 0 < self.clip_seconds <= 30:
            raise BenchmarkError("clip_seconds must be in (0, 30]: one speech-recognition window")


@dataclass
class _Level:
    """One bounded run at one concurrency: request latencies and errors."""

    load: TranscriptionLoad
    latencies: list[float]
    errors: int = 0
    issued: int = 0
    deadline: float = 0.0

    def next(self) -> bool:
        if self.issued >= self.load.max_requests or time.perf_counter() >= self.deadline:
            return False
        self.issued += 1
        return True


async def _one(client: httpx.AsyncClient, url: str, model: str, clip: bytes, level: _Level) -> None:
    start = time.perf_counter()
    try:
        response = await client.post(url, data={"model": model}, files={"file": ("speech.wav", clip, "audio/wav")})
        body = response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        body = None
    if isinstance(body, dict) and isinstance(body.get("text"), str):
        level.latencies.append(time.perf_counter() - start)
    else:
        level.errors += 1


async def _run_level(
    client: httpx.AsyncClient, url: str, model: str, clip: bytes, load: TranscriptionLoad, concurrency: int
) -> BenchmarkMetrics:
    level = _Level(load, [])
    start = time.perf_counter()
    level.deadline = start + load.max_duration_s

    async def worker() -> None:
        while level.next():
            await _one(client, url, model, clip, level)

    tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
    _done, pending = await asyncio.wait(tasks, timeout=load.max_duration_s + load.grace_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    duration = max(time.perf_counter() - start, 1e-9)
    ok = len(level.latencies)
    return BenchmarkMetrics(
        profile=PROFILE,
        concurrency=concurrency,
        requests=ok,
        errors=level.errors,
        duration_s=duration,
        request_throughput=ok / duration,
        e2e_s=latency_stats(level.latencies),
        audio_seconds_per_s=ok * wav_seconds(clip) / duration,
    )


async def arun_transcription_benchmark(
    base_url: str, model: str, load: TranscriptionLoad
) -> tuple[BenchmarkMetrics, ...]:
    load.validate()
    clip = chirp_wav(load.clip_seconds)
    url = base_url.rstrip("/") + "/audio/transcriptions"
    limits = httpx.Limits(max_connections=max(load.concurrencies))
    async with httpx.AsyncClient(timeout=load.timeout_s, limits=limits) as client:
        return tuple([await _run_level(client, url, model, clip, load, level) for level in load.concurrencies])


def run_transcription_benchmark(base_url: str, model: str, load: TranscriptionLoad) -> tuple[BenchmarkMetrics, ...]:
    """One result per concurrency level against `base_url` (ending in /v1); not from inside an event loop."""
    return asyncio.run(arun_transcription_benchmark(base_url, model, load))
