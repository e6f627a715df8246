"""The cell verdict policy (validators/cells.py) against the shipped curation.toml and hand-made reports and
benchmark metrics (the gates on errors and SLOs; tests/validators/test_cell_gates.py runs them for real)."""

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
    LatencyStats,
    ValidationVerdict,
    Verdict,
)
from registry.settings import AcceptedDeviation, SloGate, SloPolicy, ValidationSettings, load_settings
from tests.validators.observed import observed
from validators.cells import (
    STREAMED_BENCHMARK,
    TRANSCRIPTION_BENCHMARK,
    CellEvidence,
    benchmark_kind,
    benchmark_problem,
    cell_rule,
    cell_verdict,
    good_requests,
    required_checks,
    slo_gate,
    suite_task,
    unknown_policy_checks,
)
from validators.conformance import checks_for

HF_SERVE = get_recipe("hf-serve").version
HF_SERVE_FAILS = set(observed("hf-serve", HF_SERVE).fails)
"""What transformers serve at the hf-serve image's version was seen failing on CPU (tests/validators/observed.py)."""


def _template(
    runtime: str = "hf-serve", task: str = "chat", parser: str | None = None, family: str = "cpu"
) -> DeploymentTemplate:
    return DeploymentTemplate(
        id=f"org--m--8k-{family.lower()}",
        runtime=runtime,
        accelerator_family=family,
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


SLO = load_settings().slo
"""The shipped `[slo]` (its CPU gate judges the CPU template of these tests)."""


def _stats(p50: float, p90: float | None = None, p99: float | None = None) -> LatencyStats:
    return LatencyStats(mean=p50, p50=p50, p90=p90 or p50, p99=p99 or p90 or p50)


def _bench(
    concurrency: float = 1,
    *,
    requests: int = 4,
    good: int | None = None,
    ttft: LatencyStats | None = None,
    itl: LatencyStats | None = None,
    errors: int = 0,
    cancelled: int = 0,
    timeouts: int = 0,
) -> BenchmarkMetrics:
    """One level of a sweep as validators/throughput.py reports it: `requests` succeeded, `good` of them met
    every per-request SLO (goodput = good / duration), `errors` failed (cancelled and timed-out ones included)."""
    duration = 8.0
    return BenchmarkMetrics(
        profile="sweep",
        concurrency=concurrency,
        requests=requests,
        errors=errors,
        cancelled=cancelled,
        timeouts=timeouts,
        duration_s=duration,
        ttft_s=ttft or _stats(0.2, 0.3, 0.4),
        itl_s=itl or _stats(0.05, 0.08, 0.1),
        e2e_s=_stats(0.9, 1.2, 1.5),
        goodput=(requests if good is None else good) / duration,
    )


OK_BENCH = (_bench(1), _bench(2))


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
    verdict = cell_verdict(_template(task=task), report, OK_BENCH, policy, HF_SERVE, SLO)
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
        _template(runtime="vllm"), _report("chat", HF_SERVE_FAILS), OK_BENCH, load_settings().validation, "0.11.0", SLO
    )
    assert verdict.verdict is ValidationVerdict.FAILED
    assert "stream.done (fail)" in verdict.reason and "chat.n" not in verdict.reason


def test_an_unaccepted_required_failure_fails_hf_serve() -> None:
    verdict = cell_verdict(
        _template(),
        _report("chat", HF_SERVE_FAILS | {"chat.usage"}),
        OK_BENCH,
        load_settings().validation,
        HF_SERVE,
        SLO,
    )
    assert verdict.verdict is ValidationVerdict.FAILED
    assert "chat.usage (fail)" in verdict.reason


def test_missing_or_skipped_required_check_fails() -> None:
    policy = ValidationSettings(required={"chat": ("chat.shape", "chat.seed")})
    report = _report("chat", set(), skipped=frozenset({"chat.seed"}))
    assert "chat.seed (skip)" in cell_verdict(_template(), report, OK_BENCH, policy, HF_SERVE, SLO).reason
    partial = ConformanceReport(task="chat", checks=(ConformanceCheck(name="chat.shape", status=CheckStatus.PASS),))
    assert "chat.seed (missing)" in cell_verdict(_template(), partial, OK_BENCH, policy, HF_SERVE, SLO).reason


def test_tool_calls_required_only_with_a_parser() -> None:
    policy = ValidationSettings(required={"chat": ("*",)})
    assert "chat.tool_calls" not in required_checks(policy, _template())
    assert "chat.tool_calls" in required_checks(policy, _template(parser="hermes"))
    report = _report("chat", set())  # tool_calls skipped
    assert cell_verdict(_template(), report, OK_BENCH, policy, HF_SERVE, SLO).verdict is ValidationVerdict.PASSED
    with_parser = cell_verdict(_template(parser="hermes"), report, OK_BENCH, policy, HF_SERVE, SLO)
    assert with_parser.verdict is ValidationVerdict.FAILED


def test_benchmark_errors_and_empty_benchmark_fail() -> None:
    policy = ValidationSettings(required={"chat": ("chat.shape",)})
    report = _report("chat", set())
    errors = (_bench(requests=9, errors=1),)
    failed = cell_verdict(_template(), report, errors, policy, HF_SERVE, SLO)
    assert failed.verdict is ValidationVerdict.FAILED
    assert failed.reason.startswith("1 of 10 benchmark requests failed (1 other)")  # 9 succeeded + 1 failed
    assert "no results" in cell_verdict(_template(), report, (), policy, HF_SERVE, SLO).reason
    # Allowed by the error rate, and 9 good of 10 sent still meets the CPU gate's goodput share (0.9).
    lenient = ValidationSettings(required={"chat": ("chat.shape",)}, max_benchmark_error_rate=0.1)
    assert cell_verdict(_template(), report, errors, lenient, HF_SERVE, SLO).verdict is ValidationVerdict.PASSED


def test_the_error_rate_is_over_every_request_sent() -> None:
    """`requests` counts successes only: 2 succeeded and 2 failed is half failed, not "none succeeded"."""
    half = (_bench(requests=2, errors=2),)
    assert benchmark_problem(half, 0.5) is None
    assert benchmark_problem(half, 0.49) == (
        "2 of 4 benchmark requests failed (2 other); allowed fraction 0.49 (validation.max_benchmark_error_rate)"
    )
    assert benchmark_problem((_bench(requests=0, errors=3, timeouts=3),), 1.0) == (
        "no benchmark request succeeded (3 error(s): 3 timed out)"
    )


def test_cancelled_and_timed_out_requests_fail_the_cell_and_are_counted() -> None:
    policy = ValidationSettings(required={"chat": ("chat.shape",)}, max_benchmark_error_rate=0.1)
    cut = (_bench(1, requests=4), _bench(2, requests=2, good=2, errors=4, cancelled=2, timeouts=1))
    verdict = cell_verdict(_template(), _report("chat", set()), cut, policy, HF_SERVE, SLO)
    assert verdict.verdict is ValidationVerdict.FAILED
    assert "4 of 10 benchmark requests failed (2 cancelled at the run's deadline, 1 timed out, 1 other)" in (
        verdict.reason
    )
    # The failed requests also count against the goodput share of their level (2 good of 6 sent).
    assert "goodput share 33% < 90% (-57 points) at concurrency 2: 2 of 6 requests met" in verdict.reason


def test_a_missed_latency_slo_fails_the_cell_and_says_by_how_much() -> None:
    policy = ValidationSettings(required={"chat": ("chat.shape",)})
    gate = SloGate(ttft_p90_s=2.0, itl_p99_s=0.2)
    slo = SloPolicy(chat={"cpu": gate})
    slow = (_bench(1), _bench(2, ttft=_stats(1.5, 3.1, 3.5), itl=_stats(0.1, 0.15, 0.25)))
    verdict = cell_verdict(_template(), _report("chat", set()), slow, policy, HF_SERVE, slo)
    assert verdict.verdict is ValidationVerdict.FAILED
    assert verdict.reason == (
        "ttft p90 3.1 s > 2 s (+55%) at concurrency 2; itl p99 0.25 s > 0.2 s (+25%) at concurrency 2"
    )
    met = cell_verdict(_template(), _report("chat", set()), OK_BENCH, policy, HF_SERVE, slo)
    assert met.verdict is ValidationVerdict.PASSED and "the benchmark met [slo.chat.cpu]" in met.reason


def test_a_missed_goodput_share_fails_the_cell() -> None:
    policy = ValidationSettings(required={"chat": ("chat.shape",)})
    slo = SloPolicy(chat={"default": SloGate(ttft_s=1.0, tpot_s=0.1, e2e_s=5.0, min_goodput_share=0.95)})
    verdict = cell_verdict(
        _template(family="H100_80GB"), _report("chat", set()), (_bench(1, requests=8, good=6),), policy, HF_SERVE, slo
    )
    assert verdict.verdict is ValidationVerdict.FAILED
    assert verdict.reason == (
        "goodput share 75% < 95% (-20 points) at concurrency 1: "
        "6 of 8 requests met ttft <= 1 s, tpot <= 0.1 s, e2e <= 5 s"
    )
    unmeasured = _bench(1).model_copy(update={"goodput": None})
    assert (
        "goodput not measured at concurrency 1"
        in cell_verdict(
            _template(family="H100_80GB"), _report("chat", set()), (unmeasured,), policy, HF_SERVE, slo
        ).reason
    )


def test_a_latency_the_benchmark_did_not_measure_fails_a_bounded_gate() -> None:
    slo = SloPolicy(chat={"cpu": SloGate(ttft_p50_s=1.0, itl_p50_s=0.5, itl_p99_s=1.0)})
    one_chunk = _bench(1).model_copy(update={"itl_s": None})
    outcome = cell_rule(ValidationSettings(required={"chat": ()}), slo).evaluate(
        CellEvidence(_template(), _report("chat", set()), (one_chunk,), HF_SERVE)
    )
    assert outcome.reasons == ("itl not measured at concurrency 1 (no request streamed two content chunks)",)


def test_a_benchmarked_cell_without_an_slo_gate_fails() -> None:
    """No table for the family and no default: the cell cannot be judged, so it is not published."""
    slo = SloPolicy(chat={"cpu": SloGate()})
    verdict = cell_verdict(
        _template(family="H100_80GB"), _report("chat", set()), OK_BENCH, ValidationSettings(), HF_SERVE, slo
    )
    assert verdict.verdict is ValidationVerdict.FAILED
    assert (
        "no SLO gate for chat on H100_80GB: set [slo.chat.H100_80GB] or [slo.chat.default] in curation.toml"
        in verdict.reason
    )
    embeddings = _template(runtime="infinity", task="embeddings")  # no benchmark: no gate needed
    report = _report("embeddings", set())
    assert (
        cell_verdict(embeddings, report, None, ValidationSettings(), "0.0.77", slo).verdict is ValidationVerdict.PASSED
    )


def test_gates_fall_back_to_default_and_inherit_the_per_request_slos() -> None:
    slo = SloPolicy(ttft_s=3.0, chat={"default": SloGate(e2e_s=9.0, itl_p90_s=0.1), "cpu": SloGate(ttft_s=7.0)})
    assert slo.gate_table("chat", "cpu") == "slo.chat.cpu" and slo.gate_table("chat", "A100_80GB") == "slo.chat.default"
    assert slo.gate_table("embeddings", "cpu") is None and slo.gate("embeddings", "cpu") is None
    gpu = slo_gate(slo, _template(family="A100_80GB"))
    assert gpu is not None and (gpu.ttft_s, gpu.tpot_s, gpu.e2e_s) == (3.0, 0.2, 9.0)  # ttft and tpot from [slo]
    assert gpu.latency_bounds() == (("itl", "p90", 0.1),)
    cpu = slo_gate(slo, _template())
    assert cpu is not None and cpu.ttft_s == 7.0 and cpu.latency_bounds() == ()  # the family table replaces default


def test_any_task_has_its_own_gate_tables_and_e2e_can_be_bounded() -> None:
    """A task other than chat (here embeddings, as if its cells ran a benchmark) is gated by its own tables."""
    slo = SloPolicy.model_validate({"chat": {"default": {}}, "embeddings": {"cpu": {"e2e_p90_s": 2.0}}})
    assert slo.gate_table("embeddings", "cpu") == "slo.embeddings.cpu"
    assert slo.gate_table("embeddings", "H100_80GB") is None
    slow = (_bench(1).model_copy(update={"e2e_s": _stats(1.0, 3.0)}),)
    outcome = cell_rule(ValidationSettings(required={"embeddings": ()}), slo).evaluate(
        CellEvidence(_template(runtime="infinity", task="embeddings"), _report("embeddings", set()), slow, "1.0")
    )
    assert outcome.reasons == ("e2e p90 3 s > 2 s (+50%) at concurrency 1",)
    with pytest.raises(ValidationError, match="valid dictionary"):
        SloPolicy.model_validate({"ttft": 2.0})  # a typo of a per-request SLO is not taken for a task table


def test_good_requests_inverts_goodput() -> None:
    assert good_requests(_bench(requests=7, good=3)) == 3
    assert good_requests(BenchmarkMetrics(profile="p", duration_s=3.0, goodput=1 / 3 * 2)) == 2
    assert good_requests(BenchmarkMetrics(profile="p")) is None


def test_shipped_slo_gates_cover_every_family_and_bound_what_the_issue_asks() -> None:
    settings = load_settings()
    assert set(settings.slo.chat) - {"default"} <= set(settings.accelerators), "a [slo.chat.*] table names no family"
    for family in settings.accelerators:
        gate = settings.slo.gate("chat", family)
        assert gate is not None, family
        bounded = {(metric, percentile) for metric, percentile, _ in gate.latency_bounds()}
        assert bounded >= {(m, p) for m in ("ttft", "itl") for p in ("p50", "p90", "p99")}, family
        assert 0 < gate.min_goodput_share <= 1
    cpu, gpu = settings.slo.gate("chat", "cpu"), settings.slo.gate("chat", "H100_80GB")
    assert cpu is not None and gpu is not None
    assert all(g <= c for (_, _, g), (_, _, c) in zip(gpu.latency_bounds(), cpu.latency_bounds(), strict=True))


def test_embeddings_task_alias_and_no_benchmark() -> None:
    assert suite_task("embedding") == "embeddings"
    policy = load_settings().validation
    template = _template(runtime="tei", task="embeddings")
    verdict = cell_verdict(template, _report("embeddings", set()), None, policy, "1.8.0", SLO)
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
    verdict = cell_verdict(_template(), _report("chat", HF_SERVE_FAILS), OK_BENCH, policy, "99.0.0", SLO)
    assert verdict.verdict is ValidationVerdict.FAILED
    assert "models.listing (fail)" in verdict.reason and not verdict.accepted_deviations


def test_a_deviation_whose_check_now_passes_is_reported_stale() -> None:
    policy = load_settings().validation
    fixed = HF_SERVE_FAILS - {"models.listing"}
    verdict = cell_verdict(_template(), _report("chat", fixed), OK_BENCH, policy, HF_SERVE, SLO)
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
    rule = cell_rule(load_settings().validation, SLO)
    assert isinstance(rule, Rule)
    empty = ConformanceReport(task="chat", checks=())
    outcome = rule.evaluate(CellEvidence(_template(), empty, None, HF_SERVE))
    assert outcome.verdict is Verdict.REJECTED
    assert outcome.reasons[0].startswith("required conformance checks not met")


@pytest.mark.parametrize(
    ("task", "kind"),
    [
        ("chat", STREAMED_BENCHMARK),
        ("image-text-to-text", STREAMED_BENCHMARK),
        ("automatic-speech-recognition", TRANSCRIPTION_BENCHMARK),
        ("embeddings", None),
    ],
)
def test_each_task_runs_its_own_benchmark_or_none(task: str, kind: str | None) -> None:
    assert benchmark_kind(_template(task=task)) == kind
