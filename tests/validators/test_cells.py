"""The cell verdict policy (validators/cells.py) against the shipped curation.toml and hand-made reports."""

from __future__ import annotations

from registry.schema import (
    BenchmarkMetrics,
    CheckStatus,
    ConformanceCheck,
    ConformanceReport,
    DeploymentTemplate,
    ValidationVerdict,
)
from registry.settings import ValidationSettings, load_settings
from validators.cells import cell_verdict, required_checks, suite_task, unknown_policy_checks
from validators.conformance import checks_for

HF_SERVE_FAILS = {
    "models.listing",
    "chat.model_echo",
    "chat.stop",
    "chat.n",
    "chat.logprobs",
    "stream.done",
    "stream.include_usage",
    "stream.no_usage_unasked",
    "chat.response_format.json_object",
    "chat.response_format.json_schema",
    "errors.unknown_model",
    "errors.malformed_request",
    "errors.invalid_response_format",
}
"""What docs/validators.md measured transformers serve 5.23 failing on CPU."""


def _template(runtime: str = "hf-serve", task: str = "chat", parser: str | None = None) -> DeploymentTemplate:
    return DeploymentTemplate(
        id="org--m--8k-cpu",
        runtime=runtime,
        accelerator_family="cpu",
        context_length=8192,
        task=task,
        tool_call_parser=parser,
    )


def _report(
    task: str, failing: set[str], skipped: frozenset[str] = frozenset({"chat.tool_calls"})
) -> ConformanceReport:
    checks = []
    for spec in checks_for(task):
        status = (
            CheckStatus.SKIP if spec.name in skipped else CheckStatus.FAIL if spec.name in failing else CheckStatus.PASS
        )
        checks.append(ConformanceCheck(name=spec.name, status=status))
    return ConformanceReport(task=task, checks=tuple(checks))


OK_BENCH = (BenchmarkMetrics(profile="sweep", concurrency=1, requests=4, errors=0),)


def test_shipped_policy_names_only_real_checks() -> None:
    assert unknown_policy_checks(load_settings().validation) == []
    bad = ValidationSettings(required={"chat": ("chat.shape", "chat.tpyo")}, deviations={"x": {"nope": "r"}})
    assert unknown_policy_checks(bad) == ["validation.required.chat: chat.tpyo", "validation.deviations.x: nope"]


def test_hf_serve_known_deviations_pass_with_reasons_listed() -> None:
    policy = load_settings().validation
    verdict = cell_verdict(_template(), _report("chat", HF_SERVE_FAILS), OK_BENCH, policy)
    assert verdict.verdict is ValidationVerdict.PASSED, verdict.reason
    names = {d.split(":", 1)[0] for d in verdict.accepted_deviations}
    assert names == set(policy.deviations["hf-serve"])
    assert all(": " in d and len(d.split(": ", 1)[1]) > 10 for d in verdict.accepted_deviations)
    assert set(verdict.unmet_optional) == HF_SERVE_FAILS - names
    assert "optional checks not met" in verdict.reason


def test_same_failures_fail_a_runtime_without_those_deviations() -> None:
    verdict = cell_verdict(
        _template(runtime="vllm"), _report("chat", HF_SERVE_FAILS), OK_BENCH, load_settings().validation
    )
    assert verdict.verdict is ValidationVerdict.FAILED
    assert "stream.done (fail)" in verdict.reason and "chat.n" not in verdict.reason


def test_an_unaccepted_required_failure_fails_hf_serve() -> None:
    verdict = cell_verdict(
        _template(), _report("chat", HF_SERVE_FAILS | {"chat.usage"}), OK_BENCH, load_settings().validation
    )
    assert verdict.verdict is ValidationVerdict.FAILED
    assert "chat.usage (fail)" in verdict.reason


def test_missing_or_skipped_required_check_fails() -> None:
    policy = ValidationSettings(required={"chat": ("chat.shape", "chat.seed")})
    report = _report("chat", set(), skipped=frozenset({"chat.seed"}))
    assert "chat.seed (skip)" in cell_verdict(_template(), report, OK_BENCH, policy).reason
    partial = ConformanceReport(task="chat", checks=(ConformanceCheck(name="chat.shape", status=CheckStatus.PASS),))
    assert "chat.seed (missing)" in cell_verdict(_template(), partial, OK_BENCH, policy).reason


def test_tool_calls_required_only_with_a_parser() -> None:
    policy = ValidationSettings(required={"chat": ("*",)})
    assert "chat.tool_calls" not in required_checks(policy, _template())
    assert "chat.tool_calls" in required_checks(policy, _template(parser="hermes"))
    report = _report("chat", set())  # tool_calls skipped
    assert cell_verdict(_template(), report, OK_BENCH, policy).verdict is ValidationVerdict.PASSED
    assert cell_verdict(_template(parser="hermes"), report, OK_BENCH, policy).verdict is ValidationVerdict.FAILED


def test_benchmark_errors_and_empty_benchmark_fail() -> None:
    policy = ValidationSettings(required={"chat": ("chat.shape",)})
    report = _report("chat", set())
    errors = (BenchmarkMetrics(profile="sweep", requests=4, errors=1),)
    assert "1 of 4 benchmark requests failed" in cell_verdict(_template(), report, errors, policy).reason
    assert "no results" in cell_verdict(_template(), report, (), policy).reason
    lenient = ValidationSettings(required={"chat": ("chat.shape",)}, max_benchmark_error_rate=0.5)
    assert cell_verdict(_template(), report, errors, lenient).verdict is ValidationVerdict.PASSED


def test_embeddings_task_alias_and_no_benchmark() -> None:
    assert suite_task("embedding") == "embeddings"
    policy = load_settings().validation
    template = _template(runtime="tei", task="embeddings")
    verdict = cell_verdict(template, _report("embeddings", set()), None, policy)
    assert verdict.verdict is ValidationVerdict.PASSED
    assert "embeddings.shape" in required_checks(policy, template)
