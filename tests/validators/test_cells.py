"""The cell verdict policy (validators/cells.py) against the shipped curation.toml and hand-made reports."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from builders.recipes import get_recipe
from registry.rules import Rule
from registry.schema import (
    BenchmarkMetrics,
    CheckStatus,
    ConformanceCheck,
    ConformanceReport,
    DeploymentTemplate,
    ValidationVerdict,
    Verdict,
)
from registry.settings import AcceptedDeviation, ValidationSettings, load_settings
from tests.validators.observed import observed
from validators.cells import CellEvidence, cell_rule, cell_verdict, required_checks, suite_task, unknown_policy_checks
from validators.conformance import checks_for

HF_SERVE = get_recipe("hf-serve").version
HF_SERVE_FAILS = set(observed("hf-serve", HF_SERVE).fails)
"""What transformers serve at the hf-serve image's version was seen failing on CPU (tests/validators/observed.py)."""


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
    nope = AcceptedDeviation(versions="==1.0", reason="a reason long enough")
    bad = ValidationSettings(required={"chat": ("chat.shape", "chat.tpyo")}, deviations={"x": {"nope": nope}})
    assert unknown_policy_checks(bad) == ["validation.required.chat: chat.tpyo", "validation.deviations.x: nope"]


@pytest.mark.parametrize("task", ["chat", "automatic-speech-recognition", "image-text-to-text"])
def test_hf_serve_known_deviations_pass_with_reasons_listed(task: str) -> None:
    policy = load_settings().validation
    seen = observed("hf-serve", HF_SERVE, task)
    report = _report(task, set(seen.fails), skipped=seen.skips)
    verdict = cell_verdict(_template(task=task), report, OK_BENCH, policy, HF_SERVE)
    assert verdict.verdict is ValidationVerdict.PASSED, verdict.reason
    names = {d.split(":", 1)[0] for d in verdict.accepted_deviations}
    # Exactly the policy's hf-serve deviations of this task's checks are used, and each one is needed.
    assert names == set(policy.deviations["hf-serve"]) & {spec.name for spec in checks_for(task)}
    assert names <= seen.fails and not verdict.stale_deviations
    assert all(": " in d and len(d.split(": ", 1)[1]) > 10 for d in verdict.accepted_deviations)
    assert set(verdict.unmet_optional) == seen.fails - names
    assert "optional checks not met" in verdict.reason


def test_same_failures_fail_a_runtime_without_those_deviations() -> None:
    verdict = cell_verdict(
        _template(runtime="vllm"), _report("chat", HF_SERVE_FAILS), OK_BENCH, load_settings().validation, "0.11.0"
    )
    assert verdict.verdict is ValidationVerdict.FAILED
    assert "stream.done (fail)" in verdict.reason and "chat.n" not in verdict.reason


def test_an_unaccepted_required_failure_fails_hf_serve() -> None:
    verdict = cell_verdict(
        _template(), _report("chat", HF_SERVE_FAILS | {"chat.usage"}), OK_BENCH, load_settings().validation, HF_SERVE
    )
    assert verdict.verdict is ValidationVerdict.FAILED
    assert "chat.usage (fail)" in verdict.reason


def test_missing_or_skipped_required_check_fails() -> None:
    policy = ValidationSettings(required={"chat": ("chat.shape", "chat.seed")})
    report = _report("chat", set(), skipped=frozenset({"chat.seed"}))
    assert "chat.seed (skip)" in cell_verdict(_template(), report, OK_BENCH, policy, HF_SERVE).reason
    partial = ConformanceReport(task="chat", checks=(ConformanceCheck(name="chat.shape", status=CheckStatus.PASS),))
    assert "chat.seed (missing)" in cell_verdict(_template(), partial, OK_BENCH, policy, HF_SERVE).reason


def test_tool_calls_required_only_with_a_parser() -> None:
    policy = ValidationSettings(required={"chat": ("*",)})
    assert "chat.tool_calls" not in required_checks(policy, _template())
    assert "chat.tool_calls" in required_checks(policy, _template(parser="hermes"))
    report = _report("chat", set())  # tool_calls skipped
    assert cell_verdict(_template(), report, OK_BENCH, policy, HF_SERVE).verdict is ValidationVerdict.PASSED
    with_parser = cell_verdict(_template(parser="hermes"), report, OK_BENCH, policy, HF_SERVE)
    assert with_parser.verdict is ValidationVerdict.FAILED


def test_benchmark_errors_and_empty_benchmark_fail() -> None:
    policy = ValidationSettings(required={"chat": ("chat.shape",)})
    report = _report("chat", set())
    errors = (BenchmarkMetrics(profile="sweep", requests=4, errors=1),)
    assert "1 of 4 benchmark requests failed" in cell_verdict(_template(), report, errors, policy, HF_SERVE).reason
    assert "no results" in cell_verdict(_template(), report, (), policy, HF_SERVE).reason
    lenient = ValidationSettings(required={"chat": ("chat.shape",)}, max_benchmark_error_rate=0.5)
    assert cell_verdict(_template(), report, errors, lenient, HF_SERVE).verdict is ValidationVerdict.PASSED


def test_embeddings_task_alias_and_no_benchmark() -> None:
    assert suite_task("embedding") == "embeddings"
    policy = load_settings().validation
    template = _template(runtime="tei", task="embeddings")
    verdict = cell_verdict(template, _report("embeddings", set()), None, policy, "1.8.0")
    assert verdict.verdict is ValidationVerdict.PASSED
    assert "embeddings.shape" in required_checks(policy, template)


def test_policy_waives_exactly_the_observed_required_failures_of_the_image_version() -> None:
    """The accepted deviations of hf-serve at its image's version are the required checks it was seen failing,
    over every task it serves."""
    policy = load_settings().validation
    needed: set[str] = set()
    for task in ("chat", "automatic-speech-recognition", "image-text-to-text"):
        required = set(required_checks(policy, _template(task=task)))
        needed |= set(observed("hf-serve", HF_SERVE, task).fails) & required
    applying = {c for c, d in policy.deviations["hf-serve"].items() if d.applies_to(HF_SERVE)}
    assert applying == needed
    # Reported, not required: OpenAI streams transcripts for some models only; not every VLM takes two images.
    assert "audio.stream" not in required_checks(policy, _template(task="automatic-speech-recognition"))
    assert "vision.multiple_images" not in required_checks(policy, _template(task="image-text-to-text"))


def test_deviations_do_not_waive_failures_of_another_runtime_version() -> None:
    policy = load_settings().validation
    verdict = cell_verdict(_template(), _report("chat", HF_SERVE_FAILS), OK_BENCH, policy, "99.0.0")
    assert verdict.verdict is ValidationVerdict.FAILED
    assert "models.listing (fail)" in verdict.reason and not verdict.accepted_deviations


def test_a_deviation_whose_check_now_passes_is_reported_stale() -> None:
    policy = load_settings().validation
    fixed = HF_SERVE_FAILS - {"models.listing"}
    verdict = cell_verdict(_template(), _report("chat", fixed), OK_BENCH, policy, HF_SERVE)
    assert verdict.verdict is ValidationVerdict.PASSED
    assert [s.split(":", 1)[0] for s in verdict.stale_deviations] == ["models.listing"]
    assert "remove it from validation.deviations.hf-serve" in verdict.stale_deviations[0]
    assert "1 stale deviation(s) in the policy: models.listing" in verdict.reason
    assert not any(d.startswith("models.listing") for d in verdict.accepted_deviations)


def test_a_deviation_must_name_valid_versions() -> None:
    with pytest.raises(ValidationError, match="not a version specifier"):
        AcceptedDeviation(versions="5.23 please", reason="a reason long enough")
    assert AcceptedDeviation(versions=">=5.20,<5.24", reason="a reason long enough").applies_to("5.23.0")
    assert not AcceptedDeviation(versions="==5.23.0", reason="a reason long enough").applies_to("5.24.0")


def test_the_cell_verdict_is_a_rule_of_the_one_shape() -> None:
    rule = cell_rule(load_settings().validation)
    assert isinstance(rule, Rule)
    empty = ConformanceReport(task="chat", checks=())
    outcome = rule.evaluate(CellEvidence(_template(), empty, None, HF_SERVE))
    assert outcome.verdict is Verdict.REJECTED
    assert outcome.reasons[0].startswith("required conformance checks not met")
