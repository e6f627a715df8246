"""Throughput benchmark: an asyncio load generator of streamed chat completions against an OpenAI-compatible
endpoint, over the lean client in `validators/sse_client.py` (bytes timestamped when they arrive).

Profiles (`LoadSpec.profile`):
- `synchronous`: one request at a time.
- `concurrent`: `concurrency` workers, each sending its next request when the last one ends.
- `sweep`: `concurrent` at each level of `concurrencies` (a ladder), one result per level.
- `constant`: requests start at a fixed `rate` per second, whatever is in flight.
- `poisson`: requests start at `rate` per second on average, exponential gaps (seeded).
Every run is bounded by `max_requests` AND `max_duration_s`: no request starts after either bound, and requests
still in flight at `max_duration_s` + `grace_s` are cancelled. A cancelled request, one that received nothing
for `timeout_s`, and every other failure count as errors (`cancelled` and `timeouts` say how many of them).

Per request: TTFT (first content token), ITL (gaps between content chunks after the first), TPOT ((end - first
token) / (output tokens - 1)), end-to-end latency, all from the moment the request is sent (an already open
keep-alive connection; dialling one is not counted). Output tokens come from the usage the server reports, else
the number of content chunks. Request bodies (prompts) are built before a level's clock starts and server-sent
events are parsed after it ends, so the event loop only moves bytes while requests run. Per run
(`BenchmarkMetrics`): request, output-token and total-token throughput over the run's wall time,
mean/p50/p90/p99 of each latency, errors, goodput (requests per second meeting every SLO, `Settings.slo`:
ttft_s, tpot_s, e2e_s) and `read_lag_s`: how long after the bytes arrived the harness read them (kernel receive
timestamps; large values mean the load generator itself was saturated, and chunks read together lose their ITL).
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

import numpy as np

from registry.schema import BenchmarkMetrics, LatencyStats
from registry.settings import SloSettings
from validators.errors import BenchmarkError
from validators.prompts import PromptFactory
from validators.sse_client import Exchange, StreamClient, sse_events

PROFILES = ("synchronous", "concurrent", "sweep", "constant", "poisson")
_PREBUILT_BODIES = 20_000
"""Request bodies built before a level starts; beyond that many (a duration-bound run), built on the fly."""


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
        if self.timeout_s <= 0:
            raise BenchmarkError("timeout_s must be > 0")


@dataclass
class RequestRecord:
    start: float
    first_token: float | None = None
    end: float | None = None
    chunk_times: list[float] = field(default_factory=list)
    output_tokens: int = 0
    prompt_tokens: int = 0
    error: str | None = None
    cancelled: bool = False
    timed_out: bool = False
    read_lags: list[float] = field(default_factory=list)

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


def record_of(exchange: Exchange) -> RequestRecord:
    """One request's record from its raw exchange: the stream's events parsed, content chunks timed."""
    record = RequestRecord(
        start=exchange.start, cancelled=exchange.cancelled, timed_out=exchange.timed_out, read_lags=exchange.read_lags
    )
    if exchange.cancelled:
        record.error = "cancelled: still running at the run's deadline (max_duration_s + grace_s)"
    elif exchange.error is not None:
        record.error = exchange.error
    elif exchange.status != 200:
        record.error = f"HTTP {exchange.status}: {exchange.body.decode(errors='replace')[:200]}"
    else:
        record.error = _read_events(record, exchange)
        record.end = exchange.end
        if not record.output_tokens:
            record.output_tokens = len(record.chunk_times)
        if record.error is None and record.first_token is None:
            record.error = "the stream carried no content"
    return record


def _read_events(record: RequestRecord, exchange: Exchange) -> str | None:
    """Fill the record from the stream's events; the error an event carried, if any."""
    for arrived, payload in sse_events(exchange):
        if payload == b"[DONE]":
            continue
        try:
            chunk = json.loads(payload)
        except ValueError:
            return f"unparsable stream event {payload[:80]!r}"
        if not isinstance(chunk, dict):
            continue
        if "error" in chunk and not chunk.get("choices"):
            return f"error event: {str(chunk['error'])[:200]}"
        choices = chunk.get("choices")
        for choice in choices if isinstance(choices, list) else []:
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if isinstance(delta, dict) and delta.get("content"):
                record.chunk_times.append(arrived)
                if record.first_token is None:
                    record.first_token = arrived
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            try:
                record.output_tokens = int(usage.get("completion_tokens") or 0)
                record.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            except (TypeError, ValueError):
                return f"usage that is not a token count: {str(usage)[:120]}"
    return None


class _Run:
    """One bounded run of one load level."""

    def __init__(self, client: StreamClient, model: str, spec: LoadSpec, prompts: PromptFactory) -> None:
        self.client = client
        self.model = model
        self.spec = spec
        self.prompts = prompts
        self.exchanges: list[Exchange] = []
        self._bodies = [self._body(index) for index in range(min(spec.max_requests, _PREBUILT_BODIES))]
        self._issued = 0
        self._deadline = 0.0

    @property
    def records(self) -> list[RequestRecord]:
        return [record_of(exchange) for exchange in self.exchanges]

    def _body(self, index: int) -> bytes:
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": self.prompts.make(self.spec.input_tokens, index)}],
            "max_tokens": self.spec.output_tokens,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
            **self.spec.extra_body,
        }
        return json.dumps(body).encode()

    def _next(self) -> int | None:
        if self._issued >= self.spec.max_requests or time.perf_counter() >= self._deadline:
            return None
        self._issued += 1
        return self._issued - 1

    async def _one(self, index: int) -> None:
        exchange = Exchange()
        self.exchanges.append(exchange)
        body = self._bodies[index] if index < len(self._bodies) else self._body(index)
        try:
            await self.client.post(body, exchange)
        except asyncio.CancelledError:
            exchange.cancelled = True
            raise

    async def _bounded(self, tasks: Sequence[asyncio.Task[None]]) -> None:
        remaining = self._deadline + self.spec.grace_s - time.perf_counter()
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=max(0.0, remaining))
        for task in pending:
            task.cancel()
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
    """Metrics of one run from its request records (successful requests only; every failure, cancelled and
    timed-out requests included, counted as an error)."""
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
        cancelled=sum(r.cancelled for r in records),
        timeouts=sum(r.timed_out for r in records),
        duration_s=duration,
        request_throughput=len(ok) / duration,
        output_token_throughput=output / duration,
        total_token_throughput=(output + prompt) / duration,
        ttft_s=latency_stats([r.ttft for r in ok]),
        tpot_s=latency_stats([t for r in ok if (t := r.tpot) is not None]),
        itl_s=latency_stats([gap for r in ok for gap in r.itls]),
        e2e_s=latency_stats([r.e2e for r in ok]),
        goodput=goodput,
        read_lag_s=latency_stats([lag for r in records for lag in r.read_lags]),
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
    results: list[BenchmarkMetrics] = []
    if spec.profile in ("synchronous", "concurrent", "sweep"):
        levels = {"synchronous": (1,), "concurrent": (spec.concurrency,), "sweep": spec.concurrencies}[spec.profile]
        for level in levels:
            async with StreamClient(url, headers=headers, timeout_s=spec.timeout_s) as client:
                run = _Run(client, model, spec, prompts)
                await run.closed_loop(level)
            results.append(summarize(run.records, profile=spec.profile, concurrency=level, slo=slo))
    else:
        assert spec.rate is not None
        async with StreamClient(url, headers=headers, timeout_s=spec.timeout_s) as client:
            run = _Run(client, model, spec, prompts)
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
