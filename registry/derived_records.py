"""The records of the derive step (flows/derive.py): GGUF files derived from a model's staged weights for llama.cpp,
each staged under its own prefix with its own signature, linked to the source weights' signature digest."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from registry.schema import ModelRef, Record, Signature, StagedFile, utcnow


class DerivedGguf(Record):
    """One GGUF file derived from a model's staged safetensors by llama.cpp (flows/derive.py), staged under its
    own prefix with its own manifest and model-signing signature."""

    quantization: str = Field(description="the llama.cpp file type asked for: f16 (the reference), q8_0, q4_k_m, ...")
    file: StagedFile
    prefix: str = Field(description="its blob prefix inside the weights container (registry/blobs.derived_prefix)")
    signature: Signature
    fallbacks: dict[str, int] = Field(
        default_factory=dict,
        description="type -> tensors quantized to it instead (rows not a multiple of the type's block size)",
    )

    @property
    def applied(self) -> str:
        """What really applied: the type, or the type with the fallbacks llama.cpp logged."""
        if not self.fallbacks:
            return self.quantization
        used = ", ".join(f"{kind} x{count}" for kind, count in sorted(self.fallbacks.items()))
        return f"{self.quantization} (fallback: {used})"


class DerivedArtifacts(Record):
    """Everything derived from one staging of a model: linked to the source weights' signature digest (never
    touched) and keyed by what made it (source digest, llama.cpp image digest, derive policy)."""

    ref: ModelRef
    source_signature_digest: str
    image_digest: str
    key: str = Field(description="sha256 of (source signature digest, image digest, derive policy digest)")
    ggufs: tuple[DerivedGguf, ...]
    derived_at: datetime = Field(default_factory=utcnow)

    def gguf(self, quantization: str) -> DerivedGguf | None:
        return next((g for g in self.ggufs if g.quantization == quantization), None)
