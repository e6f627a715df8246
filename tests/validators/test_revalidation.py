"""The one rule for what re-validates a cell: every input it lists re-validates, nothing else does (no I/O)."""

from __future__ import annotations

from typing import Any

import pytest

from registry.rules import Rule
from registry.schema import (
    CheckStatus,
    ConformanceCheck,
    ConformanceReport,
    DeploymentTemplate,
    RuntimeImage,
    ScanSummary,
    StagedWeights,
    ValidationResult,
    ValidationVerdict,
)
from registry.settings import Settings, load_settings
from tests.fixtures.catalog import sample_entry, sample_ref, sample_signature, sample_staged, sha64
from validators import revalidation
from validators.conformance import SUITE_VERSION
from validators.conformance_checks.base import CheckSpec
from validators.revalidation import REVALIDATION, CellHistory, cell_inputs, stale_bindings

REF = sample_ref("curation-samples/tiny-llama-chat")
DEVIATIONS = {
    "hf-serve": {
        "chat.stop": {"versions": "==5.23.0", "reason": "transformers serve keeps the stop string"},
    }
}


def template(**changes: Any) -> DeploymentTemplate:
    base = DeploymentTemplate(
        id="curation-samples--tiny-llama-chat--2k-cpu",
        model=REF,
        runtime="hf-serve",
        accelerator_family="cpu",
        vendor="cpu",
        count=1,
        context_length=2048,
        runtime_args=("--max-model-len", "2048"),
    )
    return base.model_copy(update=changes)


def image(digest: str = "one", version: str = "5.23.0") -> RuntimeImage:
    pinned = f"sha256:{sha64(digest)}"
    return RuntimeImage(
        runtime="hf-serve",
        version=version,
        reference="127.0.0.1:5000/hf-serve:5.23.0-abc",
        digest=pinned,
        scan=ScanSummary(passed=True),
        signature=sample_signature(pinned, "127.0.0.1:5000/hf-serve:sig"),
    )


def settings(**overrides: Any) -> Settings:
    return load_settings(validation={"deviations": DEVIATIONS, **overrides.pop("validation", {})}, **overrides)


def ran(s: Settings, weights: StagedWeights, img: RuntimeImage | None, **changes: Any) -> ValidationResult:
    """A cell that ran (its suite report attached) on these inputs."""
    report = ConformanceReport(checks=(ConformanceCheck(name="chat.shape", status=CheckStatus.PASS),))
    base = ValidationResult(
        template=template(),
        verdict=ValidationVerdict.FAILED,
        reason="required conformance checks not met: chat.seed (fail)",
        conformance=report,
        inputs=cell_inputs(s, template(), weights, img),
        run_id="20261123T030000Z-aaaaaaaaaa",
    )
    return base.model_copy(update=changes)


def judge(s: Settings, previous: ValidationResult | None, **now: Any) -> tuple[str, ...]:
    weights = now.get("weights", sample_staged(REF))
    inputs = cell_inputs(s, now.get("template", template()), weights, now.get("image", image()))
    return REVALIDATION.evaluate(CellHistory(inputs, previous)).reasons


def test_the_rule_has_the_one_shape() -> None:
    assert isinstance(REVALIDATION, Rule)


def test_nothing_changed_keeps_the_recorded_result_passed_or_failed() -> None:
    s, weights = settings(), sample_staged(REF)
    for verdict in (ValidationVerdict.PASSED, ValidationVerdict.FAILED):
        previous = ran(s, weights, image(), verdict=verdict)
        assert judge(s, previous) == ()


def test_settings_outside_the_cells_policy_change_nothing() -> None:
    s, weights = settings(), sample_staged(REF)
    previous = ran(s, weights, image())
    unrelated = settings(
        images={"registry": "acr.example.io", "trivy_cache_dir": "/elsewhere"},
        licenses={"allow": ["MIT"]},
        orchestration={"max_parallel_models": 9},
        validation={"health_timeout_s": 5.0, "capacity_deadline_s": 0.0},
        accelerators={"cpu": {"pool": "cpu-2", "quota": {"eastus": {"devices": 9}}}},
    )
    assert judge(unrelated, previous) == ()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"image": image("two")}, "image digest"),
        ({"image": image(version="5.24.0")}, "runtime version 5.23.0 -> 5.24.0"),
        ({"weights": sample_staged(sample_ref("curation-samples/tiny-llama-chat", seed=1))}, "revision"),
        ({"template": template(runtime_args=("--max-model-len", "4096"))}, "the cell's policy"),
    ],
)
def test_each_input_of_the_cell_re_validates_it(change: dict[str, Any], expected: str) -> None:
    s, weights = settings(), sample_staged(REF)
    reasons = judge(s, ran(s, weights, image()), **change)
    assert any(expected in reason for reason in reasons), reasons


def test_a_new_weights_signature_re_validates() -> None:
    s, weights = settings(), sample_staged(REF)
    assert weights.signature is not None
    resigned = weights.model_copy(
        update={"signature": weights.signature.model_copy(update={"signature_digest": "sha256:" + sha64("new")})}
    )
    assert any("weights signature" in r for r in judge(s, ran(s, weights, image()), weights=resigned))


@pytest.mark.parametrize(
    "policy",
    [
        {"validation": {"required": {"chat": ["models.listing"]}}},
        {"validation": {"max_benchmark_error_rate": 0.5}},
        {"validation": {"bench_max_requests": 99}},
        {"slo": {"chat": {"cpu": {"ttft_p50_s": 1.0}}}},
    ],
)
def test_the_cells_own_policy_re_validates(policy: dict[str, Any]) -> None:
    s, weights = settings(), sample_staged(REF)
    reasons = judge(settings(**policy), ran(s, weights, image()))
    assert reasons == ("the cell's policy (required checks, benchmark bounds, SLOs or launch settings)",)


@pytest.mark.parametrize(
    "policy",
    [
        {"slo": {"chat": {"default": {"ttft_p50_s": 0.1}}}},  # another family's gate
        {"slo": {"ttft_s": 0.1}},  # a request SLO the CPU gate sets for itself
        {"slo": {"automatic-speech-recognition": {"cpu": {"e2e_p50_s": 1.0}}}},  # another task's gate
    ],
)
def test_a_gate_the_cell_is_not_judged_by_does_not_re_validate(policy: dict[str, Any]) -> None:
    s, weights = settings(), sample_staged(REF)
    assert judge(settings(**policy), ran(s, weights, image())) == ()


def test_an_accepted_deviation_of_this_runtime_version_re_validates_when_it_changes() -> None:
    s, weights = settings(), sample_staged(REF)
    previous = ran(s, weights, image())
    widened = {"hf-serve": {"chat.stop": {"versions": ">=5.23,<5.25", "reason": "transformers serve keeps stop"}}}
    reasons = judge(load_settings(validation={"deviations": widened}), previous)
    assert any(r.startswith("accepted deviation chat.stop") for r in reasons), reasons
    # a deviation of another runtime is not this cell's input
    other = {**DEVIATIONS, "infinity": {"errors.unknown_model": {"versions": "==0.0.77", "reason": "serves one model"}}}
    assert judge(load_settings(validation={"deviations": other}), previous) == ()


def test_a_new_suite_or_check_version_re_validates(monkeypatch: pytest.MonkeyPatch) -> None:
    s, weights = settings(), sample_staged(REF)
    previous = ran(s, weights, image())
    monkeypatch.setattr(revalidation, "SUITE_VERSION", "2.0.0")
    assert f"conformance suite {SUITE_VERSION} -> 2.0.0" in judge(s, previous)
    monkeypatch.setattr(revalidation, "SUITE_VERSION", SUITE_VERSION)
    real = revalidation.checks_for

    def bumped(task: str) -> tuple[CheckSpec, ...]:
        return tuple(
            CheckSpec(c.name, c.version + 1, c.tasks, c.description, c.run) if c.name == "chat.stop" else c
            for c in real(task)
        )

    monkeypatch.setattr(revalidation, "checks_for", bumped)
    assert judge(s, previous) == ("check chat.stop 1 -> 2",)


@pytest.mark.parametrize(
    ("previous", "expected"),
    [
        (None, "never validated at this revision"),
        ("not-validated", "the last attempt did not run"),
        ("setup-failed", "the last attempt failed before the suite ran"),
        ("untracked", "recorded before a cell's inputs were tracked"),
    ],
)
def test_results_that_are_no_verdict_on_their_inputs_always_re_run(previous: str | None, expected: str) -> None:
    s, weights = settings(), sample_staged(REF)
    recorded: ValidationResult | None = None
    if previous == "not-validated":
        recorded = ran(s, weights, image(), verdict=ValidationVerdict.NOT_VALIDATED, reason="no worker online")
    elif previous == "setup-failed":
        recorded = ran(s, weights, image(), conformance=None, reason="the image signature does not verify")
    elif previous == "untracked":
        recorded = ran(s, weights, image(), verdict=ValidationVerdict.PASSED, inputs=None)
    reasons = judge(s, recorded)
    assert len(reasons) == 1 and reasons[0].startswith(expected), reasons


def test_stale_bindings_name_each_runtime_whose_image_moved() -> None:
    entry = sample_entry(REF)
    runtime, pinned = next(iter(entry.images.items()))
    same = image().model_copy(update={"runtime": runtime, "digest": pinned.rsplit("@", 1)[1]})
    assert stale_bindings(entry, {runtime: same}) == []
    moved = same.model_copy(update={"digest": f"sha256:{sha64('rebuilt')}"})
    found = stale_bindings(entry, {runtime: moved})
    assert [(s.entry_id, s.runtime, s.bound) for s in found] == [(entry.id, runtime, pinned)]
    assert found[0].reason.startswith(f"{runtime} image moved ")
    assert stale_bindings(entry, {}) == []  # a runtime with no current image is left alone
