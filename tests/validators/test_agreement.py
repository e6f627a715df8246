"""The output-agreement measure of a derived quantization (the cell runs it against real servers:
tests/flows/test_derive.py) and the cell gate it feeds."""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from registry.schema import DeploymentTemplate, ValidationVerdict
from registry.settings import load_settings
from tests.validators.test_cells import OK_BENCH, _report
from validators.agreement import AgreementError, prefix_agreement, token_agreement
from validators.cells import cell_verdict

SETTINGS = load_settings()


def _tokenizer(tmp_path: Path) -> Path:
    """A word-level tokenizer.json (the measure only needs one that splits answers the same way both times)."""
    vocab = {w: i for i, w in enumerate(["[UNK]", "paris", "is", "the", "capital", "rome", "of", "france", "."])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    path = tmp_path / "tokenizer.json"
    tokenizer.save(str(path))
    return path


def test_prefix_agreement_counts_tokens_until_the_first_divergence() -> None:
    assert prefix_agreement([1, 2, 3, 4], [1, 2, 3, 4]) == 1.0
    assert prefix_agreement([1, 2, 3, 4], [1, 2, 9, 4]) == 0.5  # greedy decoding diverges for good
    assert prefix_agreement([1, 2, 3, 4], [7, 2, 3, 4]) == 0.0
    assert prefix_agreement([], []) == 1.0 and prefix_agreement([], [1]) == 0.0


def test_token_agreement_is_the_mean_over_prompts(tmp_path: Path) -> None:
    path = _tokenizer(tmp_path)
    references = ("paris is the capital of france .", "rome is the capital")
    answers = ("paris is the capital of france .", "rome is capital the")
    measured = token_agreement(path, references, answers, "m-f16.gguf")
    assert measured.score == pytest.approx((1.0 + 0.5) / 2)
    with pytest.raises(AgreementError, match="different numbers"):
        token_agreement(path, references, answers[:1], "m-f16.gguf")


def _quantized(quantization: str | None = "q4_k_m") -> DeploymentTemplate:
    return DeploymentTemplate(
        id="org--m--8k-cpu-llama-cpp" + (f"-{quantization}" if quantization else ""),
        runtime="llama-cpp",
        accelerator_family="cpu",
        context_length=8192,
        task="chat",
        quantization=quantization,
    )


def _verdict(template: DeploymentTemplate, agreement: float | None) -> tuple[ValidationVerdict, str]:
    verdict = cell_verdict(
        template,
        _report("chat", set()),
        OK_BENCH,
        SETTINGS.validation.model_copy(update={"required": {"chat": ("chat.shape",)}}),
        "0.3.36",
        SETTINGS.slo,
        agreement=agreement,
        min_agreement=0.6,
    )
    return verdict.verdict, verdict.reason


def test_a_quantized_template_fails_when_its_outputs_drift_from_the_reference() -> None:
    assert _verdict(_quantized(), 0.8)[0] is ValidationVerdict.PASSED
    verdict, reason = _verdict(_quantized(), 0.4)
    assert verdict is ValidationVerdict.FAILED
    assert "agreement with the f16 reference 0.40 is below [derive] min_token_agreement 0.60" in reason
    verdict, reason = _verdict(_quantized(), None)
    assert verdict is ValidationVerdict.FAILED and "not measured" in reason
    # The f16 template itself (no derived quantization) is not compared with itself.
    assert _verdict(_quantized(None), None)[0] is ValidationVerdict.PASSED
