"""The throughput benchmark: metric arithmetic on known records, bounded runs against the ground-truth server
(known timing: the metrics can be checked against it) and against the real runtime."""

from __future__ import annotations

import csv
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from devstack.net import free_port
from devstack.runtimes import RuntimeProcess
from registry.schema import BenchmarkMetrics
from registry.settings import SloSettings
from tests.fixtures.ground_truth import GroundTruthProcess
from tests.fixtures.runtimes import SMOLLM2
from validators.bench_report import flat_row, plot_sweep, publish_table_artifact, write_csv, write_json
from validators.errors import BenchmarkError
from validators.prompts import PromptFactory
from validators.sse_client import Exchange
from validators.throughput import LoadSpec, RequestRecord, record_of, run_benchmark, summarize


def _record(start: float, first: float, chunks: list[float], tokens: int, prompt: int = 10) -> RequestRecord:
    return RequestRecord(
        start=start,
        first_token=first,
        end=chunks[-1],
        chunk_times=chunks,
        output_tokens=tokens,
        prompt_tokens=prompt,
    )


def test_summarize_computes_every_metric_from_records() -> None:
    records = [
        _record(0.0, 0.5, [0.5, 0.7, 0.9], 3),  # ttft 0.5, tpot 0.2, itl 0.2 0.2, e2e 0.9
        _record(1.0, 2.0, [2.0, 3.0], 2),  # ttft 1.0, tpot 1.0, itl 1.0, e2e 2.0
        RequestRecord(start=1.5, error="HTTP 500"),
        RequestRecord(start=1.6, error="cancelled", cancelled=True, read_lags=[0.001, 0.003]),
        RequestRecord(start=1.7, error="ReadTimeout", timed_out=True),
    ]
    metrics = summarize(records, profile="concurrent", concurrency=2, slo=SloSettings(ttft_s=0.8, tpot_s=0.5, e2e_s=5))
    assert metrics.requests == 2 and metrics.errors == 3
    assert metrics.cancelled == 1 and metrics.timeouts == 1
    assert metrics.read_lag_s is not None and metrics.read_lag_s.p50 == pytest.approx(0.002)
    assert metrics.duration_s == pytest.approx(3.0)
    assert metrics.request_throughput == pytest.approx(2 / 3)
    assert metrics.output_token_throughput == pytest.approx(5 / 3)
    assert metrics.total_token_throughput == pytest.approx(25 / 3)
    assert (
        metrics.ttft_s is not None
        and metrics.ttft_s.mean == pytest.approx(0.75)
        and metrics.ttft_s.p50 == pytest.approx(0.75)
    )
    assert metrics.tpot_s is not None and metrics.tpot_s.mean == pytest.approx(0.6)
    assert metrics.itl_s is not None and metrics.itl_s.p50 == pytest.approx(0.2)
    assert metrics.e2e_s is not None and metrics.e2e_s.p99 == pytest.approx(0.9 + 0.99 * 1.1)
    assert metrics.goodput == pytest.approx(1 / 3)  # only the first meets TTFT <= 0.8


def _exchange(*events: bytes, status: int = 200) -> Exchange:
    body = b"".join(b"data: " + event + b"\n\n" for event in events)
    exchange = Exchange(start=0.0)
    assert exchange.feed(0.5, b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body))
    return exchange


def test_records_from_streams_hostile_ones_included() -> None:
    content = b'{"choices": [{"delta": {"content": "a"}}]}'
    good = record_of(_exchange(b'{"choices": [{"delta": {"role": "assistant"}}]}', content, content, b"[DONE]"))
    assert good.ok and good.ttft == 0.5 and good.output_tokens == 2 and good.chunk_times == [0.5, 0.5]
    usage = b'{"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3}}'
    assert record_of(_exchange(content, usage)).output_tokens == 3

    failures = {
        "no content": _exchange(b'{"choices": [{"delta": "a"}]}', b'{"choices": "x"}', b"[1]"),
        "not a token count": _exchange(content, b'{"choices": [], "usage": {"completion_tokens": "many"}}'),
        "error event": _exchange(b'{"error": {"message": "overloaded"}}'),
        "unparsable": _exchange(b"{nope"),
        "HTTP 503": _exchange(status=503),
    }
    for expected, exchange in failures.items():
        record = record_of(exchange)
        assert not record.ok and record.error is not None and expected in record.error, (expected, record.error)
    cancelled = Exchange(start=1.0, cancelled=True)
    assert record_of(cancelled).cancelled and "deadline" in str(record_of(cancelled).error)


def test_load_spec_validation() -> None:
    with pytest.raises(BenchmarkError, match="rate"):
        LoadSpec(profile="poisson").validate()
    with pytest.raises(BenchmarkError, match="unknown profile"):
        LoadSpec(profile="burst").validate()
    with pytest.raises(BenchmarkError, match="bounded"):
        LoadSpec(max_requests=0).validate()
    with pytest.raises(BenchmarkError, match="timeout_s"):
        LoadSpec(timeout_s=0).validate()


def test_prompts_have_exact_token_lengths(model_dirs: dict[str, Path]) -> None:
    factory = PromptFactory(model_dirs[SMOLLM2], seed=3)
    prompts = [factory.make(64, i) for i in range(5)]
    assert factory.exact
    assert [factory.count(p) for p in prompts] == [64] * 5
    assert len(set(prompts)) == 5
    with pytest.raises(BenchmarkError, match=r"tokenizer\.json"):
        PromptFactory(model_dirs[SMOLLM2] / "missing")


@pytest.mark.integration
def test_bounded_runs_against_transformers_serve(
    hf_serve: RuntimeProcess, model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    slo = SloSettings(ttft_s=60, tpot_s=60, e2e_s=120)
    common: dict[str, Any] = {"input_tokens": 32, "output_tokens": 4, "max_duration_s": 60.0}
    sweep = run_benchmark(
        hf_serve.base_url,
        SMOLLM2,
        LoadSpec(profile="sweep", concurrencies=(1, 2), max_requests=2, **common),
        tokenizer_dir=model_dirs[SMOLLM2],
        slo=slo,
    )
    assert [m.concurrency for m in sweep] == [1, 2]
    for metrics in sweep:
        assert metrics.requests == 2 and metrics.errors == 0
        assert metrics.output_token_throughput > 0 and metrics.total_token_throughput > metrics.output_token_throughput
        assert metrics.ttft_s is not None and metrics.e2e_s is not None and metrics.itl_s is not None
        assert metrics.ttft_s.p50 <= metrics.e2e_s.p50
        assert metrics.goodput == pytest.approx(metrics.request_throughput)  # generous SLOs: every request is good

    (poisson,) = run_benchmark(
        hf_serve.base_url,
        SMOLLM2,
        LoadSpec(profile="poisson", rate=4.0, max_requests=3, seed=1, **common),
        slo=slo,
    )
    assert poisson.requests == 3 and poisson.rate == 4.0 and poisson.errors == 0

    # The duration bound stops a run long before its request bound.
    (short,) = run_benchmark(
        hf_serve.base_url,
        SMOLLM2,
        LoadSpec(
            profile="constant",
            rate=0.5,
            max_requests=50,
            input_tokens=16,
            output_tokens=2,
            max_duration_s=1.0,
        ),
    )
    assert 1 <= short.requests <= 2

    # A wrong model id is counted as errors, not as latency.
    (bad,) = run_benchmark(
        hf_serve.base_url, "no-such/model", LoadSpec(profile="synchronous", max_requests=1, **common)
    )
    assert bad.requests == 0 and bad.errors == 1 and bad.ttft_s is None

    json_path = write_json(sweep, tmp_path / "sweep.json")
    assert [BenchmarkMetrics.model_validate(m) for m in json.loads(json_path.read_text())] == list(sweep)
    rows = list(csv.DictReader(write_csv(sweep, tmp_path / "sweep.csv").open()))
    assert [float(row["concurrency"]) for row in rows] == [1.0, 2.0] and "ttft_p99_s" in rows[0]
    png = plot_sweep(sweep, tmp_path / "sweep.png", title="SmolLM2 on CPU")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert publish_table_artifact(sweep, key="x") is False
    assert flat_row(sweep[0])["requests"] == 2


def _settled(server: GroundTruthProcess) -> dict[str, Any]:
    """The server notices closed connections on its own loop: poll until nothing is in flight (bounded)."""
    deadline = time.monotonic() + 20
    while (stats := server.stats())["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.05)
    return stats


@pytest.mark.integration
def test_metrics_match_the_ground_truth_schedule(ground_truth: GroundTruthProcess) -> None:
    truth = ground_truth.schedule
    ground_truth.stats(reset=True)
    spec = LoadSpec(profile="concurrent", concurrency=8, max_requests=24, output_tokens=truth.tokens, input_tokens=16)
    (metrics,) = run_benchmark(
        ground_truth.base_url, truth.model, spec, slo=SloSettings(ttft_s=60, tpot_s=60, e2e_s=60)
    )
    assert metrics.requests == 24 and metrics.errors == metrics.cancelled == metrics.timeouts == 0
    assert metrics.concurrency == 8
    assert metrics.output_token_throughput * metrics.duration_s == pytest.approx(24 * truth.tokens)
    assert metrics.total_token_throughput > metrics.output_token_throughput
    assert metrics.ttft_s is not None and metrics.e2e_s is not None and metrics.itl_s is not None
    assert metrics.tpot_s is not None and metrics.read_lag_s is not None
    # The server never writes a token before it is due: no measurement can be below the schedule.
    assert metrics.ttft_s.p50 >= truth.ttft_s and metrics.ttft_s.mean >= truth.ttft_s
    assert metrics.e2e_s.p50 >= truth.e2e_s() and metrics.e2e_s.mean >= truth.e2e_s()
    assert metrics.ttft_s.p50 < metrics.e2e_s.p50
    assert metrics.itl_s.mean == pytest.approx(metrics.tpot_s.mean, rel=1e-2)  # 7 gaps per request sum to its span
    assert metrics.read_lag_s.p50 >= 0
    assert metrics.goodput == pytest.approx(metrics.request_throughput)
    stats = ground_truth.stats()
    assert stats["requests"] == stats["completed"] == 24 and stats["aborted"] == 0
    assert stats["max_in_flight"] <= 8  # the concurrency bound holds at the server
    assert stats["tokens_written"] == 24 * truth.tokens


@pytest.mark.integration
def test_sweep_and_open_loop_against_the_ground_truth(ground_truth: GroundTruthProcess) -> None:
    truth = ground_truth.schedule
    common: dict[str, Any] = {"output_tokens": 3, "input_tokens": 8, "max_duration_s": 60.0}
    sweep = run_benchmark(
        ground_truth.base_url, truth.model, LoadSpec(profile="sweep", concurrencies=(1, 4), max_requests=4, **common)
    )
    assert [(m.concurrency, m.requests, m.errors) for m in sweep] == [(1, 4, 0), (4, 4, 0)]
    (poisson,) = run_benchmark(
        ground_truth.base_url, truth.model, LoadSpec(profile="poisson", rate=20.0, max_requests=6, seed=2, **common)
    )
    assert poisson.rate == 20.0 and poisson.requests == 6 and poisson.errors == 0
    assert poisson.ttft_s is not None and poisson.ttft_s.p50 >= truth.ttft_s


@pytest.mark.integration
def test_requests_cut_by_the_deadline_count_as_cancelled_errors(ground_truth: GroundTruthProcess) -> None:
    ground_truth.stats(reset=True)
    slow = {"x_schedule": {"ttft_s": 0.05, "itl_s": 1.0}}  # 20 tokens: 19 s per stream
    spec = LoadSpec(
        profile="concurrent",
        concurrency=3,
        max_requests=10,
        max_duration_s=0.3,
        grace_s=0.2,
        output_tokens=20,
        input_tokens=8,
        extra_body=slow,
    )
    (metrics,) = run_benchmark(ground_truth.base_url, ground_truth.schedule.model, spec)
    assert metrics.requests == 0 and metrics.ttft_s is None
    assert metrics.errors == 3 and metrics.cancelled == 3 and metrics.timeouts == 0
    stats = _settled(ground_truth)
    assert stats["requests"] == 3 and stats["aborted"] == 3  # the harness closed the cut streams

    # A cut in the middle of a run: whatever finished counts as requests, whatever was streaming as cancelled,
    # and every stream the server saw ended one way or the other.
    ground_truth.stats(reset=True)
    medium = replace(spec, concurrency=2, max_duration_s=0.3, grace_s=0.05, output_tokens=3)
    (cut,) = run_benchmark(
        ground_truth.base_url, ground_truth.schedule.model, replace(medium, extra_body={"x_schedule": {"itl_s": 0.1}})
    )
    assert cut.errors == cut.cancelled >= 0 and cut.timeouts == 0
    stats = _settled(ground_truth)
    assert stats["requests"] == cut.requests + cut.cancelled >= 2
    assert stats["aborted"] + stats["completed"] == stats["requests"] and stats["aborted"] <= cut.cancelled


@pytest.mark.integration
def test_timeouts_unreachable_servers_and_http_errors_are_errors(ground_truth: GroundTruthProcess) -> None:
    model = ground_truth.schedule.model
    never = {"x_schedule": {"ttft_s": 30.0}}
    spec = LoadSpec(profile="concurrent", concurrency=2, max_requests=2, timeout_s=0.3, input_tokens=8)
    (timed_out,) = run_benchmark(ground_truth.base_url, model, replace(spec, extra_body=never))
    assert timed_out.requests == 0 and timed_out.errors == 2 and timed_out.timeouts == 2 and timed_out.cancelled == 0

    (missing,) = run_benchmark(ground_truth.root_url + "/no-such-prefix/v1", model, spec)
    assert missing.requests == 0 and missing.errors == 2 and missing.timeouts == 0

    (refused,) = run_benchmark(f"http://127.0.0.1:{free_port()}/v1", model, spec)
    assert refused.requests == 0 and refused.errors == 2
