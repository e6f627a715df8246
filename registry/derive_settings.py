"""`[derive]` in curation.toml: which GGUF quantizations the derive step makes for llama.cpp (flows/derive.py) and
how close a quantized template's outputs must stay to the f16 reference's (validators/cells.py).

`quantizations` is the derive stage's policy (its results are cached under it); `min_token_agreement` is part of
the validate stage's policy (a changed bound re-validates the quantized cells).
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator


class DeriveSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    """Stage 4b (flows/derive.py): the GGUF quantizations derived from staged safetensors for llama.cpp, and how
    close a quantized template's greedy outputs must stay to the unquantized (f16) model's to be published."""

    quantizations: tuple[str, ...] = Field(
        default=(), description="llama.cpp file types derived besides the f16 reference (e.g. q8_0, q4_k_m)"
    )
    min_token_agreement: float = Field(
        default=0.5, ge=0, le=1, description="greedy-token agreement with the f16 reference a quantized cell needs"
    )
    timeout_s: float = Field(default=1800.0, gt=0, description="one conversion or quantization container")

    @field_validator("quantizations")
    @classmethod
    def _known_names(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        for name in names:
            if not re.fullmatch(r"[a-z0-9_]{2,16}", name) or name == "f16":
                raise ValueError(f"{name!r} is not a llama.cpp file type name like q8_0 or q4_k_m (f16 is always made)")
        return names
