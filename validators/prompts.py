"""Synthetic prompts of a set length in the model's own tokens, for the throughput benchmark.

The tokenizer is read from the model directory's `tokenizer.json` with the `tokenizers` library (data only, no
repository code). Prompts are seeded word salads from a fixed vocabulary, cut to exactly `input_tokens` tokens
of
that tokenizer (before the chat template adds its own few tokens). Each prompt starts with a distinct number
so no
two share a prefix (no prefix-cache flattery).
"""

from __future__ import annotations

import random
from pathlib import Path

from validators.errors import BenchmarkError

_WORDS = [
    "river",
    "mountain",
    "engine",
    "quiet",
    "orange",
    "lattice",
    "harbor",
    "signal",
    "copper",
    "meadow",
    "violet",
    "thunder",
    "garden",
    "pocket",
    "ladder",
    "crystal",
    "planet",
    "whisper",
    "circuit",
    "marble",
    "lantern",
    "forest",
    "silver",
    "canyon",
    "anchor",
    "feather",
    "rocket",
    "island",
    "window",
    "compass",
    "kettle",
    "glacier",
    "puzzle",
    "saddle",
    "timber",
    "velvet",
    "harvest",
    "beacon",
    "ribbon",
    "falcon",
    "prairie",
    "quartz",
    "summit",
    "meteor",
    "spindle",
    "orchard",
    "tunnel",
    "basalt",
    "cobalt",
    "ember",
    "fjord",
    "grove",
    "helium",
    "ivory",
    "jasmine",
    "kelp",
    "lagoon",
    "mosaic",
]


class PromptFactory:
    """Make prompts of exactly `input_tokens` tokens of the model's tokenizer (or words, without one)."""

    def __init__(self, tokenizer_dir: Path | None, *, seed: int = 0) -> None:
        self._rng = random.Random(seed)  # noqa: S311 (reproducible filler text, not security)
        self._tokenizer = None
        if tokenizer_dir is not None:
            path = Path(tokenizer_dir) / "tokenizer.json"
            if not path.is_file():
                raise BenchmarkError(f"{path} not found: point --tokenizer at a model directory with tokenizer.json")
            from tokenizers import Tokenizer

            self._tokenizer = Tokenizer.from_file(str(path))

    @property
    def exact(self) -> bool:
        """True when lengths are counted in the model's tokens (else in words)."""
        return self._tokenizer is not None

    def count(self, text: str) -> int:
        if self._tokenizer is None:
            return len(text.split())
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def make(self, input_tokens: int, index: int) -> str:
        if input_tokens < 1:
            raise BenchmarkError(f"input_tokens must be >= 1, got {input_tokens}")
        words = [str(index)] + [self._rng.choice(_WORDS) for _ in range(input_tokens * 2 + 8)]
        text = " ".join(words)
        if self._tokenizer is None:
            return " ".join(words[:input_tokens])
        ids = self._tokenizer.encode(text, add_special_tokens=False).ids[:input_tokens]
        prompt: str = self._tokenizer.decode(ids)
        # Decoding then re-encoding can merge differently at the cut; trim until it is exact.
        while self.count(prompt) > input_tokens and ids:
            ids = ids[:-1]
            prompt = self._tokenizer.decode(ids)
        return prompt
