"""The cell verdict: whether one template passed validation, as rules of the one shape (no I/O).

Policy (`[validation]` and `[slo]` in curation.toml): the conformance checks required per task, per runtime the
known deviations accepted with a reason each (for the runtime versions they were seen on), the benchmark's
allowed error rate, and per task and accelerator family the SLO gate of its benchmark. A cell passes when every
required check passed or is an accepted deviation of its runtime at that version, its benchmark completed
requests within the allowed error rate (cancelled and timed-out requests are errors), and every level of the
benchmark met the gate: TTFT / ITL / e2e percentile bounds and the minimum goodput share (the fraction of requests
sent that met every per-request SLO, as `validators/throughput.py` counts them). A required check that is
missing from the report, skipped (feature declared unsupported) or failed, and not accepted, fails the cell.
`chat.tool_calls` is required only when the template declares a tool-call parser. An accepted deviation whose
check passes is stale: it waives nothing and is reported so the policy can drop it.

A template that serves a GGUF the pipeline derived (a llama.cpp `-<quantization>` template) also needs its greedy
outputs to agree with the unquantized f16 reference's, measured in its cell (validators/agreement.py), to at
least `[derive] min_token_agreement`; an agreement that was not measured fails it.

`cell_rule(policy, slo, min_agreement)` is `AllOf(required checks met, benchmark within the error rate, benchmark
meets the SLO gate, a derived quantization agrees with its reference)` over a `CellEvidence` (registry/rules.py):
accepted means PASSED, rejected means FAILED, with the reasons (which SLO, by how much, how many requests were
cancelled or timed out) in the cell's result and its `cell-<template id>` artifact. `cell_verdict` adds what a
passed cell still reports (accepted, optional and stale deviations, the SLO table it met).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from registry.rules import AllOf, Check, CheckAll, Rule
from registry.schema import (
    BenchmarkMetrics,
    CheckStatus,
    ConformanceReport,
    DeploymentTemplate,
    ValidationVerdict,
)
from registry.settings import SloGate, SloPolicy, ValidationSettings
from validators.conformance import TASKS, checks_for
from validators.planner import is_derived_gguf
from validators.tasks import CHAT, SPEECH_RECOGNITION, VISION_CHAT

TOOL_CALLS_CHECK = "chat.tool_calls"
WILDCARD = "*"
_TASK_ALIASES = {"embedding": "embeddings", "feature-extraction": "embeddings", "text-generation": "chat"}


@dataclass(frozen=True)
class CellVerdict:
    verdict: ValidationVerdict
    reason: str
    accepted_deviations: tuple[str, ...] = ()
    unmet_optional: tuple[str, ...] = ()
    stale_deviations: tuple[str, ...] = ()


def suite_task(task: str) -> str:
    """The conformance suite's task name for a template task (one of `validators.conformance.TASKS`)."""
    return _TASK_ALIASES.get(task, task)


STREAMED_BENCHMARK = "streamed"
TRANSCRIPTION_BENCHMARK = "transcription"
_BENCHMARK_OF_TASK = {
    CHAT: STREAMED_BENCHMARK,
    VISION_CHAT: STREAMED_BENCHMARK,  # text prompts through the same streamed chat benchmark
    SPEECH_RECOGNITION: TRANSCRIPTION_BENCHMARK,
}


def benchmark_kind(template: DeploymentTemplate) -> str | None:
    """Which bounded benchmark this template's cell runs: streamed chat, transcription uploads, or None (e.g.
    embeddings, which have none)."""
    return _BENCHMARK_OF_TASK.get(suite_task(template.task))


def required_checks(policy: ValidationSettings, template: DeploymentTemplate) -> tuple[str, ...]:
    """The checks this template must pass, in suite order; `*` means every check of the task."""
    task = suite_task(template.task)
    known = tuple(spec.name for spec in checks_for(task))
    listed = policy.required.get(task, (WILDCARD,))
    names = set(known) if WILDCARD in listed else set(listed)
    if template.tool_call_parser and task == "chat":
        names.add(TOOL_CALLS_CHECK)
    else:
        names.discard(TOOL_CALLS_CHECK)
    ordered = [name for name in known if name in names]
    return tuple(ordered + sorted(names - set(known)))


def unknown_policy_checks(policy: ValidationSettings) -> list[str]:
    """Check names in the policy that the suite does not have (a typo in curation.toml)."""
    problems: list[str] = []
    for task, names in policy.required.items():
        known = {spec.name for spec in checks_for(suite_task(task))}
        problems += [f"validation.required.{task}: {name}" for name in names if name != WILDCARD and name not in known]
    every = {spec.name for task in TASKS for spec in checks_for(task)}
    for runtime, deviations in policy.deviations.items():
        problems += [f"validation.deviations.{runtime}: {name}" for name in deviations if name not in every]
    return problems


def accepted_deviations(policy: ValidationSettings, runtime: str, version: str) -> dict[str, str]:
    """check name -> reason, for the failures this runtime is allowed at this version."""
    return {
        check: deviation.reason
        for check, deviation in policy.deviations.get(runtime, {}).items()
        if deviation.applies_to(version)
    }


def stale_deviations(policy: ValidationSettings, runtime: str, version: str, report: ConformanceReport) -> list[str]:
    """Accepted deviations of this runtime version whose check passed: they no longer describe the runtime."""
    passed = {check.name for check in report.checks if check.status is CheckStatus.PASS}
    return [
        f"{check}: passes on {runtime} {version}; remove it from validation.deviations.{runtime}"
        for check in accepted_deviations(policy, runtime, version)
        if check in passed
    ]


def _failures(cancelled: int, timeouts: int, errors: int) -> str:
    """`2 cancelled at the run's deadline, 1 timed out, 1 other` (the parts that are not zero)."""
    others = errors - cancelled - timeouts
    parts = [
        f"{cancelled} cancelled at the run's deadline" if cancelled else "",
        f"{timeouts} timed out" if timeouts else "",
        f"{others} other" if others > 0 else "",
    ]
    return ", ".join(part for part in parts if part) or "none"


def benchmark_problem(metrics: Sequence[BenchmarkMetrics], max_error_rate: float) -> str | None:
    """Why the benchmark does not support a pass (None when it does). `requests` counts the successful
    requests, `errors` every failed one (cancelled and timed-out ones included): together, the requests sent."""
    if not metrics:
        return "the benchmark produced no results"
    succeeded = sum(m.requests for m in metrics)
    errors = sum(m.errors for m in metrics)
    failures = _failures(sum(m.cancelled for m in metrics), sum(m.timeouts for m in metrics), errors)
    if succeeded <= 0:
        return f"no benchmark request succeeded ({errors} error(s): {failures})"
    sent = succeeded + errors
    if errors / sent > max_error_rate:
        return (
            f"{errors} of {sent} benchmark requests failed ({failures}); "
            f"allowed fraction {max_error_rate:g} (validation.max_benchmark_error_rate)"
        )
    return None


def good_requests(metrics: BenchmarkMetrics) -> int | None:
    """How many requests of one run met every per-request SLO (goodput is that count over the run's duration,
    validators/throughput.py); None when the run measured no goodput."""
    if metrics.goodput is None:
        return None
    return round(metrics.goodput * metrics.duration_s)


def _level(metrics: BenchmarkMetrics) -> str:
    if metrics.concurrency is not None:
        return f"at concurrency {metrics.concurrency:g}"
    if metrics.rate is not None:
        return f"at {metrics.rate:g} requests/s"
    return f"in the {metrics.profile} run"


_UNMEASURED = {
    "ttft": "no request succeeded",
    "itl": "no request streamed two content chunks",
    "e2e": "no request succeeded",
}


def _latency_problems(metrics: BenchmarkMetrics, gate: SloGate) -> list[str]:
    where = _level(metrics)
    stats = {"ttft": metrics.ttft_s, "itl": metrics.itl_s, "e2e": metrics.e2e_s}
    problems: dict[str, str] = {}  # keyed so that an unmeasured metric is reported once, not per percentile
    for metric, percentile, bound in gate.latency_bounds():
        measured = stats[metric]
        if measured is None:
            problems.setdefault(metric, f"{metric} not measured {where} ({_UNMEASURED[metric]})")
            continue
        value = float(getattr(measured, percentile))
        if value > bound:
            excess = (value / bound - 1) * 100
            by = f"+{excess:.0f}%" if excess >= 1 else f"+{excess:.2g}%"
            problems[metric + percentile] = f"{metric} {percentile} {value:.3g} s > {bound:.3g} s ({by}) {where}"
    return list(problems.values())


def _goodput_problem(metrics: BenchmarkMetrics, gate: SloGate) -> str | None:
    if gate.min_goodput_share <= 0:
        return None
    where = _level(metrics)
    good = good_requests(metrics)
    if good is None:
        return f"goodput not measured {where}: the benchmark must run with the gate's per-request SLOs"
    sent = metrics.requests + metrics.errors
    share = good / sent if sent else 0.0
    if share >= gate.min_goodput_share:
        return None
    shortfall = (gate.min_goodput_share - share) * 100
    return (
        f"goodput share {share:.0%} < {gate.min_goodput_share:.0%} (-{shortfall:.0f} points) {where}: "
        f"{good} of {sent} requests met ttft <= {gate.ttft_s:g} s, tpot <= {gate.tpot_s:g} s, e2e <= {gate.e2e_s:g} s"
    )


def slo_problems(metrics: Sequence[BenchmarkMetrics], gate: SloGate) -> list[str]:
    """Every SLO of the gate that a level of the benchmark missed, with the measured value and by how much."""
    problems: list[str] = []
    for level in metrics:
        problems += _latency_problems(level, gate)
        goodput = _goodput_problem(level, gate)
        problems += [goodput] if goodput else []
    return problems


def slo_gate(slo: SloPolicy, template: DeploymentTemplate) -> SloGate | None:
    """The SLO gate of this template's benchmark (`[slo.<task>.<family>]`, else `[slo.<task>.default]`)."""
    return slo.gate(suite_task(template.task), template.accelerator_family)


@dataclass(frozen=True)
class CellEvidence:
    """What the cell verdict judges: the template, its conformance report and benchmark (None: the task has
    none), and the version of the runtime it ran on."""

    template: DeploymentTemplate
    report: ConformanceReport
    metrics: Sequence[BenchmarkMetrics] | None
    runtime_version: str
    agreement: float | None = None


def required_checks_met(policy: ValidationSettings) -> Rule[CellEvidence]:
    def objection(evidence: CellEvidence) -> str | None:
        statuses = {check.name: check.status for check in evidence.report.checks}
        allowed = accepted_deviations(policy, evidence.template.runtime, evidence.runtime_version)
        failing = [
            f"{name} ({'missing' if statuses.get(name) is None else statuses[name].value})"
            for name in required_checks(policy, evidence.template)
            if statuses.get(name) is not CheckStatus.PASS and name not in allowed
        ]
        return "required conformance checks not met: " + ", ".join(failing) if failing else None

    return Check(objection)


def benchmark_within_error_rate(policy: ValidationSettings) -> Rule[CellEvidence]:
    def objections(evidence: CellEvidence) -> list[str]:
        if evidence.metrics is None:
            return []
        problem = benchmark_problem(evidence.metrics, policy.max_benchmark_error_rate)
        return [problem] if problem else []

    return CheckAll(objections)


def benchmark_meets_slo(slo: SloPolicy) -> Rule[CellEvidence]:
    def objections(evidence: CellEvidence) -> list[str]:
        if not evidence.metrics:
            return []  # no benchmark for this task, or none ran (the error-rate rule says so)
        template = evidence.template
        gate = slo_gate(slo, template)
        if gate is None:
            task = suite_task(template.task)
            return [
                f"no SLO gate for {task} on {template.accelerator_family}: "
                f"set [slo.{task}.{template.accelerator_family}] or [slo.{task}.default] in curation.toml"
            ]
        return slo_problems(evidence.metrics, gate)

    return CheckAll(objections)


def outputs_agree(min_agreement: float) -> Rule[CellEvidence]:
    """`[derive] min_token_agreement`: a derived quantization's greedy outputs agree with its f16 reference's."""

    def objection(evidence: CellEvidence) -> str | None:
        if not is_derived_gguf(evidence.template):
            return None
        if evidence.agreement is None:
            return "the output agreement with the f16 reference was not measured"
        if evidence.agreement < min_agreement:
            return (
                f"greedy-token agreement with the f16 reference {evidence.agreement:.2f} is below "
                f"[derive] min_token_agreement {min_agreement:.2f}"
            )
        return None

    return Check(objection)


def cell_rule(policy: ValidationSettings, slo: SloPolicy, min_agreement: float = 0.0) -> Rule[CellEvidence]:
    """`[validation]`, `[slo]` and `[derive]`: every required check passed or is an accepted deviation, the
    benchmark held within the error rate and met its SLO gate, and a derived quantization agrees with its
    reference."""
    return AllOf(
        required_checks_met(policy),
        benchmark_within_error_rate(policy),
        benchmark_meets_slo(slo),
        outputs_agree(min_agreement),
    )


def cell_verdict(
    template: DeploymentTemplate,
    report: ConformanceReport,
    metrics: Sequence[BenchmarkMetrics] | None,
    policy: ValidationSettings,
    runtime_version: str,
    slo: SloPolicy,
    *,
    agreement: float | None = None,
    min_agreement: float = 0.0,
) -> CellVerdict:
    """PASSED or FAILED from the conformance report, the benchmark (None: no benchmark for this task) and, for a
    derived quantization, its output agreement with the reference."""
    evidence = CellEvidence(template, report, metrics, runtime_version, agreement)
    outcome = cell_rule(policy, slo, min_agreement).evaluate(evidence)
    statuses = {check.name: check.status for check in report.checks}
    allowed = accepted_deviations(policy, template.runtime, runtime_version)
    stale = tuple(stale_deviations(policy, template.runtime, runtime_version, report))
    required = required_checks(policy, template)
    optional = tuple(name for name, status in statuses.items() if name not in required and status is CheckStatus.FAIL)
    waived = [name for name in (*required, *optional) if name in allowed and statuses.get(name) is not CheckStatus.PASS]
    accepted = [f"{name}: {allowed[name]}" for name in waived]
    unmet = tuple(name for name in optional if name not in allowed)
    if not outcome.accepted:
        return CellVerdict(ValidationVerdict.FAILED, "; ".join(outcome.reasons), tuple(accepted), unmet, stale)
    reason = "every required check passed"
    if accepted:
        reason += f" ({len(accepted)} accepted deviation(s) of {template.runtime} {runtime_version})"
    if metrics:
        reason += f"; the benchmark met [{slo.gate_table(suite_task(template.task), template.accelerator_family)}]"
    if agreement is not None:
        reason += f"; greedy-token agreement with the f16 reference {agreement:.2f}"
    if unmet:
        reason += "; optional checks not met: " + ", ".join(unmet)
    if stale:
        reason += f"; {len(stale)} stale deviation(s) in the policy: " + ", ".join(s.split(":", 1)[0] for s in stale)
    return CellVerdict(ValidationVerdict.PASSED, reason, tuple(accepted), unmet, stale)
