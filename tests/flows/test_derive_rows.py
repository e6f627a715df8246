"""The `derive` cell of a model's row is one line, whatever llama.cpp logged."""

from __future__ import annotations

from flows.derive import MAX_REASON_CHARS, derive_text
from registry.schema import ModelRef, StageName, StageOutcome, StageResult

REF = ModelRef(repo_id="org/model", revision="a" * 40)


def _result(outcome: StageOutcome, reason: str) -> StageResult:
    return StageResult(ref=REF, stage=StageName.DERIVE, outcome=outcome, reason=reason, policy_digest="k")


def test_a_refusal_shows_its_first_line_and_llama_cpps_last_error_line() -> None:
    log = (
        "INFO:hf-to-gguf:Loading model\nWARNING:hf-to-gguf:** chkhsh: 1234\n\n"
        "NotImplementedError: BPE pre-tokenizer was not recognized\n"
    )
    reason = f"the conversion of {REF} exited with 1; its log ends:\n{log}"
    text = derive_text(_result(StageOutcome.REJECTED, reason))
    assert "\n" not in text
    assert text == (
        f"rejected: the conversion of {REF} exited with 1: NotImplementedError: BPE pre-tokenizer was not recognized"
    )


def test_a_one_line_reason_is_kept_and_a_long_one_bounded() -> None:
    assert (
        derive_text(_result(StageOutcome.SKIPPED, "no signed llama-cpp image")) == "skipped: no signed llama-cpp image"
    )
    text = derive_text(_result(StageOutcome.FAILED, "first\n" + "x" * 1000))
    assert len(text) <= len("failed: ") + MAX_REASON_CHARS and "\n" not in text
