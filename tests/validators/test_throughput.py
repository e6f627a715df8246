"""The throughput benchmark: metric arithmetic on known records, and bounded runs against the real server."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from devstack.runtimes import RuntimeProcess
from registry.schema import BenchmarkMetrics
from registry.settings import SloSettings
from tests.fixtures.runtimes import SMOLLM2
from validators.bench_report import flat_row, plot_sweep, publish_table_artifact, write_csv, write_json
from validators.errors import BenchmarkError
from validators.prompts import PromptFactory
from validators.throughput import LoadSpec, RequestRecord, run_benchmark, summarize


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
    ]
    metrics = summarize(records, profile="concurrent", concurrency=2, slo=SloSettings(ttft_s=0.8, tpot_s=0.5, e2e_s=5))
    assert metrics.requests == 2 and metrics.errors == 1
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


def test_load_spec_validation() -> None:
    with pytest.raises(BenchmarkError, match="rate"):
        LoadSpec(profile="poisson").validate()
    with pytest.raises(BenchmarkError, match="unknown profile"):
        LoadSpec(profile="burst").validate()
    with pytest.raises(BenchmarkError, match="bounded"):
        LoadSpec(max_requests=0).validate()


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
