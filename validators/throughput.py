"""Throughput benchmark: an asyncio load generator over httpx streaming against an OpenAI-compatible chat
endpoint.

Profiles (`LoadSpec.profile`):
- `synchronous`: one request at a time.
- `concurrent`: `concurrency` workers, each sending its next request when the last one ends.
- `sweep`: `concurrent` at each level of `concurrencies` (a ladder), one result per level.
- `constant`: requests start at a fixed `rate` per second, whatever is in flight.
- `poisson`: requests start at `rate` per second on average, exponential gaps (seeded).
Every run is bounded by `max_requests` AND `max_duration_s`: no request starts after either bound, and
requests
still in flight at `max_duration_s` + `grace_s` are cancelled (left out of the metrics, counted in
`cancelled`).

Per request: TTFT (first content token), ITL (gaps between content chunks after the first), TPOT ((end - first
token) / (output tokens - 1)), end-to-end latency. Output tokens come from the usage the server reports, else
the
number of content chunks. Per run (`BenchmarkMetrics`): request, output-token and total-token throughput over
the
run's wall time, mean/p50/p90/p99 of each latency, errors, and goodput: requests per second meeting every SLO
(`Settings.slo`: ttft_s, tpot_s, e2e_s).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from registry.schema import BenchmarkMetrics, LatencyStats
from registry.settings import SloSettings
from validators.errors import BenchmarkError
from validators.prompts import PromptFactory

PROFILES = ("synchronous", "concurrent", "sweep", "constant", "poisson")


@dataclass(frozen=True)
class LoadSpec:
    profile: str = "synchronous"
    concurrency: int = 1
    concurrencies: tuple[int, ...] = (1, 2, 4)
    rate: float | None = None
    max_requests: int = 20
    max_duration_s: float = 60.0
    grace_s: float = 30.0
    input_tokens: int = 128
    output_tokens: int = 32
    seed: int = 0
    timeout_s: float = 120.0
    extra_body: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if self.profile not in PROFILES:
            raise BenchmarkError(f"unknown profile {self.profile!r}; choose one of {', '.join(PROFILES)}")
        if self.profile in ("constant", "poisson") and not (self.rate and self.rate > 0):
            raise BenchmarkError(f"profile {self.profile} needs --rate > 0 (requests per second)")
        if self.max_requests < 1 or self.max_duration_s <= 0:
            raise BenchmarkError("max_requests must be >= 1 and max_duration_s > 0: every run is bounded by both")
        if self.concurrency < 1 or any(c < 1 for c in self.concurrencies) or not self.concurrencies:
            raise BenchmarkError("concurrency levels must be >= 1")


@dataclass
class RequestRecord:
    start: float
    first_token: float | None = None
    end: float | None = None
    chunk_times: list[float] = field(default_factory=list)
    output_tokens: int = 0
    prompt_tokens: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.end is not None and self.first_token is not None

    @property
    def ttft(self) -> float:
        assert self.first_token is not None
        return self.first_token - self.start

    @property
    def e2e(self) -> float:
        assert self.end is not None
        return self.end - self.start

    @property
    def tpot(self) -> float | None:
        if self.first_token is None or self.end is None or self.output_tokens < 2:
            return None
        return (self.end - self.first_token) / (self.output_tokens - 1)

    @property
    def itls(self) -> list[float]:
        return [b - a for a, b in zip(self.chunk_times, self.chunk_times[1:], strict=False)]


async def send_request(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> RequestRecord:
    """One streamed chat completion, timed per content chunk."""
    record = RequestRecord(start=time.perf_counter())
    try:
        async with client.stream("POST", url, json=body) as response:
            if response.status_code != 200:
                text = (await response.aread()).decode(errors="replace")
                record.error = f"HTTP {response.status_code}: {text[:200]}"
                return record
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    continue  # read to the end: a fully read response returns its connection to the pool
                try:
                    chunk = json.loads(payload)
                except json.JSONDecodeError:
                    record.error = f"unparsable stream event {payload[:80]!r}"
                    return record
                if not isinstance(chunk, dict):
                    continue
                if "error" in chunk and not chunk.get("choices"):
                    record.error = f"error event: {str(chunk['error'])[:200]}"
                    return record
                now = time.perf_counter()
                for choice in chunk.get("choices") or []:
                    if (choice.get("delta") or {}).get("content"):
                        record.chunk_times.append(now)
                        if record.first_token is None:
                            record.first_token = now
                usage = chunk.get("usage")
                if isinstance(usage, dict):
                    record.output_tokens = int(usage.get("completion_tokens") or 0)
                    record.prompt_tokens = int(usage.get("prompt_tokens") or 0)
        record.end = time.perf_counter()
        if not record.output_tokens:
            record.output_tokens = len(record.chunk_times)
        if record.first_token is None:
            record.error = "the stream carried no content"
    except httpx.HTTPError as exc:
        record.error = f"{type(exc).__name__}: {exc}"[:200]
    return record


class _Run:
    """One bounded run of one load level."""

    def __init__(self, client: httpx.AsyncClient, url: str, model: str, spec: LoadSpec, prompts: PromptFactory) -> None:
        self.client = client
        self.url = url
        self.model = model
        self.spec = spec
        self.prompts = prompts
        self.records: list[RequestRecord] = []
        self.cancelled = 0
        self._issued = 0
        self._deadline = 0.0

    def _body(self, index: int) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": [{"role": "user", "content": self.prompts.make(self.spec.input_tokens, index)}],
            "max_tokens": self.spec.output_tokens,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
            **self.spec.extra_body,
        }

    def _next(self) -> int | None:
        if self._issued >= self.spec.max_requests or time.perf_counter() >= self._deadline:
            return None
        self._issued += 1
        return self._issued - 1

    async def _one(self, index: int) -> None:
        self.records.append(await send_request(self.client, self.url, self._body(index)))

    async def _bounded(self, tasks: Sequence[asyncio.Task[None]]) -> None:
        remaining = self._deadline + self.spec.grace_s - time.perf_counter()
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=max(0.0, remaining))
        for task in pending:
            task.cancel()
        self.cancelled += len(pending)
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    async def closed_loop(self, concurrency: int) -> float:
        start = time.perf_counter()
        self._deadline = start + self.spec.max_duration_s

        async def worker() -> None:
            while (index := self._next()) is not None:
                await self._one(index)

        await self._bounded([asyncio.create_task(worker()) for _ in range(concurrency)])
        return start

    async def open_loop(self, rate: float, poisson: bool) -> float:
        rng = random.Random(self.spec.seed)  # noqa: S311 (reproducible arrival times, not security)
        start = time.perf_counter()
        self._deadline = start + self.spec.max_duration_s
        tasks: list[asyncio.Task[None]] = []
        at = start
        while (index := self._next()) is not None:
            delay = at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if time.perf_counter() >= self._deadline:
                break
            tasks.append(asyncio.create_task(self._one(index)))
            at += rng.expovariate(rate) if poisson else 1.0 / rate
        await self._bounded(tasks)
        return start


def latency_stats(values: Sequence[float]) -> LatencyStats | None:
    """mean / p50 / p90 / p99 of `values` (None when there are none)."""
    if not values:
        return None
    array = np.asarray(values, dtype=float)
    p50, p90, p99 = np.percentile(array, [50, 90, 99])
    return LatencyStats(mean=float(array.mean()), p50=float(p50), p90=float(p90), p99=float(p99))


def summarize(
    records: Sequence[RequestRecord],
    *,
    profile: str,
    concurrency: float | None = None,
    rate: float | None = None,
    slo: SloSettings | None = None,
) -> BenchmarkMetrics:
    """Metrics of one run from its request records (successful requests only; failures counted as errors)."""
    ok = [r for r in records if r.ok]
    errors = len(records) - len(ok)
    if not records:
        return BenchmarkMetrics(profile=profile, concurrency=concurrency, rate=rate)
    first = min(r.start for r in records)
    last = max((r.end or r.start) for r in records)
    duration = max(last - first, 1e-9)
    output = sum(r.output_tokens for r in ok)
    prompt = sum(r.prompt_tokens for r in ok)
    goodput = None
    if slo is not None:
        good = [
            r for r in ok if r.ttft <= slo.ttft_s and r.e2e <= slo.e2e_s and (r.tpot is None or r.tpot <= slo.tpot_s)
        ]
        goodput = len(good) / duration
    return BenchmarkMetrics(
        profile=profile,
        concurrency=concurrency,
        rate=rate,
        requests=len(ok),
        errors=errors,
        duration_s=duration,
        request_throughput=len(ok) / duration,
        output_token_throughput=output / duration,
        total_token_throughput=(output + prompt) / duration,
        ttft_s=latency_stats([r.ttft for r in ok]),
        tpot_s=latency_stats([t for r in ok if (t := r.tpot) is not None]),
        itl_s=latency_stats([gap for r in ok for gap in r.itls]),
        e2e_s=latency_stats([r.e2e for r in ok]),
        goodput=goodput,
    )


async def arun_benchmark(
    base_url: str,
    model: str,
    spec: LoadSpec,
    *,
    tokenizer_dir: Path | None = None,
    slo: SloSettings | None = None,
    api_key: str | None = None,
) -> tuple[BenchmarkMetrics, ...]:
    """Run `spec` against `base_url` (ending in /v1); one result per load level (several for a sweep)."""
    spec.validate()
    prompts = PromptFactory(tokenizer_dir, seed=spec.seed)
    url = base_url.rstrip("/") + "/chat/completions"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(max_connections=max((spec.concurrency, *spec.concurrencies, spec.max_requests)))
    results: list[BenchmarkMetrics] = []
    async with httpx.AsyncClient(timeout=spec.timeout_s, headers=headers, limits=limits) as client:
        if spec.profile in ("synchronous", "concurrent", "sweep"):
            levels = {"synchronous": (1,), "concurrent": (spec.concurrency,), "sweep": spec.concurrencies}[spec.profile]
            for level in levels:
                run = _Run(client, url, model, spec, prompts)
                await run.closed_loop(level)
                results.append(summarize(run.records, profile=spec.profile, concurrency=level, slo=slo))
        else:
            assert spec.rate is not None
            run = _Run(client, url, model, spec, prompts)
            await run.open_loop(spec.rate, poisson=spec.profile == "poisson")
            results.append(summarize(run.records, profile=spec.profile, rate=spec.rate, slo=slo))
    return tuple(results)


def run_benchmark(
    base_url: str,
    model: str,
    spec: LoadSpec,
    *,
    tokenizer_dir: Path | None = None,
    slo: SloSettings | None = None,
    api_key: str | None = None,
) -> tuple[BenchmarkMetrics, ...]:
    """Synchronous wrapper of `arun_benchmark` (do not call from inside a running event loop)."""
    return asyncio.run(arun_benchmark(base_url, model, spec, tokenizer_dir=tokenizer_dir, slo=slo, api_key=api_key))
