"""Output agreement of a quantized model with its unquantized reference: greedy continuations of a fixed small set
of prompts, compared token by token.

Both servers answer the same chat requests at temperature 0 (greedy) with a fixed seed and `max_tokens`; each
answer is tokenized with the model's own staged tokenizer (tokenizer.json). A prompt's agreement is the length of
the common token prefix over the reference's length (greedy decoding diverges for good once one token differs),
and the measure is the mean over the prompts. A quantized cell is published only when it reaches the policy's
`[derive] min_token_agreement` (validators/cells.py).
"""

from __future__ import annotations

from pathlib import Path

import httpx
from pydantic import BaseModel, ConfigDict

from validators.errors import ValidatorError

PROMPTS = (
    "What is the capital of France?",
    "Write one sentence about the sea.",
    "List three primary colours.",
    "Explain in one sentence what a compiler does.",
    "What is 12 plus 30?",
)
MAX_TOKENS = 16
SEED = 7


class AgreementError(ValidatorError):
    """A server did not answer an agreement prompt, or the tokenizer could not be read."""


class Agreement(BaseModel):
    """The measure and what it was computed from."""

    model_config = ConfigDict(frozen=True)

    score: float
    reference: str
    answers: tuple[str, ...]
    references: tuple[str, ...]


def greedy_answers(base_url: str, model: str, prompts: tuple[str, ...] = PROMPTS) -> tuple[str, ...]:
    """Each prompt's greedy chat answer from the OpenAI-compatible server at `base_url` (…/v1)."""
    answers = []
    with httpx.Client(timeout=120.0) as client:
        for prompt in prompts:
            body = {
                "model": model,
                "messages": [{"role": "user", "content": prompt}],
                "temperature": 0.0,
                "seed": SEED,
                "max_tokens": MAX_TOKENS,
            }
            try:
                response = client.post(f"{base_url}/chat/completions", json=body)
                response.raise_for_status()
                answers.append(str(response.json()["choices"][0]["message"]["content"] or ""))
            except (httpx.HTTPError, KeyError, IndexError, TypeError, ValueError) as exc:
                raise AgreementError(f"{base_url} did not answer the agreement prompt {prompt!r}: {exc}") from exc
    return tuple(answers)


def prefix_agreement(reference: list[int], candidate: list[int]) -> float:
    """The common prefix's length over the reference's (1.0 when both are empty)."""
    if not reference:
        return 1.0 if not candidate else 0.0
    same = 0
    for want, got in zip(reference, candidate, strict=False):
        if want != got:
            break
        same += 1
    return same / len(reference)


def token_agreement(
    tokenizer_json: Path, references: tuple[str, ...], answers: tuple[str, ...], reference: str
) -> Agreement:
    """The mean prefix agreement of `answers` with `references`, tokenized by the model's tokenizer."""
    from tokenizers import Tokenizer

    if len(references) != len(answers) or not answers:
        raise AgreementError("the reference and the candidate answered different numbers of prompts")
    try:
        tokenizer = Tokenizer.from_file(str(tokenizer_json))
    except Exception as exc:  # tokenizers raises its own untyped Exception on a bad file
        raise AgreementError(f"cannot read the model's tokenizer {tokenizer_json.name}: {exc}") from exc
    scores = [
        prefix_agreement(
            tokenizer.encode(ref, add_special_tokens=False).ids, tokenizer.encode(got, add_special_tokens=False).ids
        )
        for ref, got in zip(references, answers, strict=True)
    ]
    return Agreement(
        score=round(sum(scores) / len(scores), 4), reference=reference, answers=answers, references=references
    )
