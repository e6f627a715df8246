"""The cell verdict: whether one template passed validation, as rules of the one shape (no I/O).

Policy (`[validation]` in curation.toml): the conformance checks required per task, and per runtime the known
deviations accepted with a reason each, for the runtime versions they were seen on. A cell passes when every
required check passed or is an accepted deviation of its runtime at that version, and its benchmark completed
requests within the allowed error rate. A required check that is missing from the report, skipped (feature
declared unsupported) or failed, and not accepted, fails the cell. `chat.tool_calls` is required only when the
template declares a tool-call parser. An accepted deviation whose check passes is stale: it waives nothing and
is reported so the policy can drop it.

`cell_rule(policy)` is `AllOf(required checks met, benchmark within the error rate)` over a `CellEvidence`
(registry/rules.py): accepted means PASSED, rejected means FAILED, with the reasons in the cell's result and
its `cell-<template id>` artifact. `cell_verdict` adds what a passed cell still reports (accepted, optional
and stale deviations).
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
from registry.settings import ValidationSettings
from validators.conformance import TASKS, checks_for

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


def benchmark_problem(metrics: Sequence[BenchmarkMetrics], max_error_rate: float) -> str | None:
    """Why the benchmark does not support a pass (None when it does)."""
    if not metrics:
        return "the benchmark produced no results"
    requests = sum(m.requests for m in metrics)
    errors = sum(m.errors for m in metrics)
    if requests - errors <= 0:
        return f"no benchmark request succeeded ({errors} error(s))"
    if requests and errors / requests > max_error_rate:
        return f"{errors} of {requests} benchmark requests failed (allowed fraction {max_error_rate:g})"
    return None


@dataclass(frozen=True)
class CellEvidence:
    """What the cell verdict judges: the template, its conformance report and benchmark (None: the task has
    none), and the version of the runtime it ran on."""

    template: DeploymentTemplate
    report: ConformanceReport
    metrics: Sequence[BenchmarkMetrics] | None
    runtime_version: str


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


def cell_rule(policy: ValidationSettings) -> Rule[CellEvidence]:
    """`[validation]`: every required check passed or is an accepted deviation, and the benchmark held."""
    return AllOf(required_checks_met(policy), benchmark_within_error_rate(policy))


def cell_verdict(
    template: DeploymentTemplate,
    report: ConformanceReport,
    metrics: Sequence[BenchmarkMetrics] | None,
    policy: ValidationSettings,
    runtime_version: str,
) -> CellVerdict:
    """PASSED or FAILED from the conformance report and the benchmark (None: no benchmark for this task)."""
    outcome = cell_rule(policy).evaluate(CellEvidence(template, report, metrics, runtime_version))
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
    if unmet:
        reason += "; optional checks not met: " + ", ".join(unmet)
    if stale:
        reason += f"; {len(stale)} stale deviation(s) in the policy: " + ", ".join(s.split(":", 1)[0] for s in stale)
    return CellVerdict(ValidationVerdict.PASSED, reason, tuple(accepted), unmet, stale)
