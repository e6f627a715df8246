"""The cell's benchmark gates for real: the load generator against the ground-truth server (exact TTFT and ITL,
never early), judged by the cell verdict as stage 5 judges it. A schedule slower than the gate fails the cell
with the SLO it missed and by how much; requests cut by the run's deadline or timed out fail it with their
count. The failing cases hold on any machine (the server never writes a token before it is due); the passing
one has bounds tens of times wider than its schedule.
"""

from __future__ import annotations

from typing import Any

import pytest

from registry.schema import (
    BenchmarkMetrics,
    CheckStatus,
    ConformanceCheck,
    ConformanceReport,
    DeploymentTemplate,
    ValidationVerdict,
)
from registry.settings import SloGate, SloPolicy, ValidationSettings
from tests.fixtures.ground_truth import GroundTruthProcess
from validators.cells import CellVerdict, cell_verdict, slo_gate
from validators.throughput import LoadSpec, run_benchmark

pytestmark = pytest.mark.integration

TEMPLATE = DeploymentTemplate(
    id="org--m--8k-cpu", runtime="hf-serve", accelerator_family="cpu", context_length=8192, task="chat"
)
POLICY = ValidationSettings(required={"chat": ("chat.shape",)})
CONFORMING = ConformanceReport(task="chat", checks=(ConformanceCheck(name="chat.shape", status=CheckStatus.PASS),))
SLO = SloPolicy(
    chat={
        "cpu": SloGate(
            ttft_s=0.5, tpot_s=1.0, e2e_s=10.0, min_goodput_share=0.9, ttft_p50_s=0.4, ttft_p99_s=5.0, itl_p99_s=1.0
        )
    }
)
"""A request is good within TTFT 0.5 s; the TTFT median must stay under 0.4 s (the default schedule's is 0.1 s)."""


def _cell(server: GroundTruthProcess, **load: Any) -> tuple[CellVerdict, tuple[BenchmarkMetrics, ...]]:
    """The cell's sweep (1 and 2 streams) against the server, with goodput counted against the cell's gate."""
    spec = LoadSpec(profile="sweep", concurrencies=(1, 2), max_requests=2, input_tokens=8, output_tokens=4, **load)
    metrics = run_benchmark(server.base_url, server.schedule.model, spec, slo=slo_gate(SLO, TEMPLATE))
    return cell_verdict(TEMPLATE, CONFORMING, metrics, POLICY, "5.23.0", SLO), metrics


def test_a_schedule_within_the_gate_passes(ground_truth: GroundTruthProcess) -> None:
    verdict, metrics = _cell(ground_truth)
    assert verdict.verdict is ValidationVerdict.PASSED, verdict.reason
    assert "the benchmark met [slo.chat.cpu]" in verdict.reason
    assert [(m.concurrency, m.requests, m.errors) for m in metrics] == [(1, 2, 0), (2, 2, 0)]


def test_a_schedule_that_misses_the_ttft_slo_fails_the_cell(ground_truth: GroundTruthProcess) -> None:
    late = {"x_schedule": {"ttft_s": 0.6, "itl_s": 0.01}}  # every first token 0.6 s after the request, or later
    verdict, metrics = _cell(ground_truth, extra_body=late)
    assert verdict.verdict is ValidationVerdict.FAILED
    assert all(m.errors == 0 and m.ttft_s is not None and m.ttft_s.p50 >= 0.6 for m in metrics)
    reasons = verdict.reason.split("; ")
    for level in (1, 2):
        missed = [r for r in reasons if r.startswith("ttft p50 ") and r.endswith(f"at concurrency {level}")]
        assert len(missed) == 1, reasons
        assert "s > 0.4 s (+" in missed[0]  # measured > bound (+50% or more)
        assert int(missed[0].split("(+", 1)[1].split("%", 1)[0]) >= 50
        assert f"goodput share 0% < 90% (-90 points) at concurrency {level}: 0 of 2 requests met" in verdict.reason
    assert "ttft p99" not in verdict.reason and "itl" not in verdict.reason  # only what it missed


def test_requests_cancelled_at_the_deadline_fail_the_cell(ground_truth: GroundTruthProcess) -> None:
    slow = {"x_schedule": {"ttft_s": 0.05, "itl_s": 1.0}}  # 4 tokens take 3 s: the 0.3 s + 0.2 s bound cuts them
    verdict, metrics = _cell(ground_truth, max_duration_s=0.3, grace_s=0.2, extra_body=slow)
    assert [(m.requests, m.errors, m.cancelled) for m in metrics] == [(0, 1, 1), (0, 2, 2)]
    assert verdict.verdict is ValidationVerdict.FAILED
    assert verdict.reason.startswith("no benchmark request succeeded (3 error(s): 3 cancelled at the run's deadline)")
    assert "ttft not measured at concurrency 1 (no request succeeded)" in verdict.reason


def test_timed_out_requests_fail_the_cell(ground_truth: GroundTruthProcess) -> None:
    never = {"x_schedule": {"ttft_s": 30.0}}
    verdict, metrics = _cell(ground_truth, timeout_s=0.3, extra_body=never)
    assert [(m.requests, m.errors, m.timeouts) for m in metrics] == [(0, 2, 2), (0, 2, 2)]
    assert verdict.verdict is ValidationVerdict.FAILED
    assert verdict.reason.startswith("no benchmark request succeeded (4 error(s): 4 timed out)")
