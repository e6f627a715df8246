"""What the planner needs to know about a model, read from its config.json and safetensors metadata.

Everything here is pure data: config.json is parsed as JSON by the caller, never imported or executed. Missing
or nonsensical keys raise `PlannerError` naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from validators.encoder_spec import EncoderSpec, audio_encoder, vision_encoder
from validators.errors import PlannerError
from validators.tasks import CHAT, EMBEDDINGS, SPEECH_RECOGNITION, VISION_CHAT, task_from_config

# Bytes per element of each safetensors dtype (the Hub's `safetensors.parameters` keys).
DTYPE_BYTES: dict[str, float] = {
    "F64": 8, "I64": 8, "U64": 8,
    "F32": 4, "I32": 4, "U32": 4,
    "F16": 2, "BF16": 2, "I16": 2, "U16": 2,
    "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "I8": 1, "U8": 1, "BOOL": 1,
    "F4": 0.5, "F6_E2M3": 0.75, "F6_E3M2": 0.75,
}  # fmt: skip

# config.json `torch_dtype` / `dtype` -> bytes per element.
_TORCH_DTYPE_BYTES = {"float32": 4, "float": 4, "float16": 2, "half": 2, "bfloat16": 2, "float64": 8}

# Encoder-decoders (Whisper): the decoder's keys are what holds a KV cache per generated token.
_DECODER_KEYS = {
    "num_hidden_layers": "decoder_layers",
    "num_attention_heads": "decoder_attention_heads",
    "intermediate_size": "decoder_ffn_dim",
    "max_position_embeddings": "max_target_positions",
}


@dataclass(frozen=True)
class RopeExtension:
    """YaRN scaling: `factor` x `original` positions."""

    factor: float
    original: int

    @property
    def context(self) -> int:
        return int(self.original * self.factor)

    def as_json(self) -> dict[str, Any]:
        return {"rope_type": "yarn", "factor": self.factor, "original_max_position_embeddings": self.original}


@dataclass(frozen=True)
class ModelSpec:
    """The architecture facts that drive memory: layers, heads, context, dtype, experts, quantization."""

    model_type: str
    architectures: tuple[str, ...]
    layers: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    hidden_size: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int
    dtype_bytes: float
    dtype: str
    tie_word_embeddings: bool = False
    rope_yarn: RopeExtension | None = None
    sliding_window: int | None = None
    sliding_layers: int = 0
    experts: int = 0
    experts_per_token: int = 0
    moe_intermediate_size: int = 0
    quantization: str | None = None
    quant_bits: float | None = None
    task: str = CHAT
    encoder: EncoderSpec | None = None

    def kv_bytes_per_token(self, kv_dtype_bytes: float, context: int) -> float:
        """KV-cache bytes one sequence of `context` tokens needs, per token (all layers, whole model)."""
        if self.task == EMBEDDINGS:
            return 0.0
        full_layers = self.layers - self.sliding_layers
        per_layer_token = 2 * self.kv_heads * self.head_dim * kv_dtype_bytes
        windowed = min(context, self.sliding_window) if self.sliding_window else context
        total = per_layer_token * (full_layers * context + self.sliding_layers * windowed)
        return total / context if context else 0.0

    def estimated_parameters(self) -> int:
        """Parameter count from the config alone (used only when the safetensors metadata is missing)."""
        h = self.hidden_size
        attn = h * self.attention_heads * self.head_dim * 2 + h * self.kv_heads * self.head_dim * 2
        if self.experts:
            inter = self.moe_intermediate_size or self.intermediate_size
            mlp = self.experts * 3 * h * inter + h * self.experts
        else:
            mlp = 3 * h * self.intermediate_size
        embed = self.vocab_size * h * (1 if self.tie_word_embeddings else 2)
        return int(self.layers * (attn + mlp + 2 * h) + embed)


def _get(config: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if config.get(key) is not None:
            return config[key]
    return None


def _positive_int(config: Mapping[str, Any], *keys: str, default: int | None = None) -> int:
    value = _get(config, *keys)
    if value is None:
        if default is not None:
            return default
        raise PlannerError(f"config.json has none of {', '.join(keys)}; the planner needs it to size the KV cache")
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise PlannerError(f"config.json {keys[0]} must be a positive number, got {value!r}")
    return int(value)


def _quantization(config: Mapping[str, Any]) -> tuple[str | None, float | None]:
    quant = config.get("quantization_config")
    if not isinstance(quant, Mapping):
        return None, None
    method = str(quant.get("quant_method") or "unknown").lower()
    bits: float | None = None
    if isinstance(quant.get("bits"), int | float):
        bits = float(quant["bits"])
    elif quant.get("load_in_4bit"):
        bits = 4.0
    elif quant.get("load_in_8bit") or method in {"fp8", "fbgemm_fp8", "compressed-tensors"}:
        bits = 8.0
    elif method == "mxfp4":
        bits = 4.25
    label = f"{method}-int{int(bits)}" if bits and method in {"gptq", "awq"} else method
    return label, bits


def _rope_yarn(config: Mapping[str, Any]) -> RopeExtension | None:
    rope = config.get("rope_scaling") or config.get("rope_parameters")
    if not isinstance(rope, Mapping):
        return None
    kind = str(rope.get("rope_type") or rope.get("type") or "").lower()
    factor = rope.get("factor")
    if kind != "yarn" or not isinstance(factor, int | float) or factor <= 1:
        return None
    original = rope.get("original_max_position_embeddings") or config.get("max_position_embeddings")
    if not isinstance(original, int) or original <= 0:
        return None
    return RopeExtension(factor=float(factor), original=original)


def _decoder_view(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """An encoder-decoder's config seen from its decoder (the part that generates and holds the KV cache)."""
    if config.get("decoder_layers") is None:
        return config
    return {**config, **{key: config[src] for key, src in _DECODER_KEYS.items() if config.get(src) is not None}}


def _encoder(config: Mapping[str, Any], task: str) -> EncoderSpec | None:
    if task == SPEECH_RECOGNITION:
        return audio_encoder(config)
    if task == VISION_CHAT:
        return vision_encoder(config)
    return None


def model_spec(config: Mapping[str, Any], task: str | None = None) -> ModelSpec:
    """Parse the planner's view of a config.json dict (text configs nested under `text_config` are used).

    `task` defaults to what the config's architecture says (validators/tasks.py); speech and vision-language
    models also get their encoder (validators/encoder_spec.py).
    """
    if not isinstance(config, Mapping):
        raise PlannerError("config.json must be a JSON object")
    task = task or task_from_config(config).task
    text = config.get("text_config")
    cfg: Mapping[str, Any] = _decoder_view({**config, **text} if isinstance(text, Mapping) else config)
    hidden = _positive_int(cfg, "hidden_size", "d_model", "n_embd", "dim")
    heads = _positive_int(cfg, "num_attention_heads", "n_head", "n_heads", "encoder_attention_heads")
    kv_heads = _positive_int(cfg, "num_key_value_heads", "num_kv_heads", "n_kv_heads", default=heads)
    if heads % kv_heads:
        raise PlannerError(f"config.json: {heads} attention heads are not a multiple of {kv_heads} KV heads")
    head_dim = _positive_int(cfg, "head_dim", default=max(1, hidden // heads))
    dtype_name = str(_get(cfg, "torch_dtype", "dtype") or "float32").replace("torch.", "").lower()
    if dtype_name not in _TORCH_DTYPE_BYTES:
        raise PlannerError(f"config.json torch_dtype {dtype_name!r} is not a float type the planner knows")
    layer_types = cfg.get("layer_types")
    window = _get(cfg, "sliding_window", "attention_window")
    sliding_window = int(window) if isinstance(window, int) and window > 0 else None
    if cfg.get("use_sliding_window") is False:
        sliding_window = None
    layers = _positive_int(cfg, "num_hidden_layers", "n_layer", "n_layers", "num_layers")
    if sliding_window and isinstance(layer_types, list):
        sliding_layers = sum(1 for t in layer_types if "sliding" in str(t))
    else:
        sliding_layers = layers if sliding_window else 0
    quant_label, quant_bits = _quantization(cfg)
    architectures = cfg.get("architectures") or ()
    return ModelSpec(
        model_type=str(cfg.get("model_type") or "unknown").lower(),
        architectures=tuple(str(a) for a in architectures) if isinstance(architectures, list) else (),
        layers=layers,
        attention_heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        hidden_size=hidden,
        intermediate_size=_positive_int(cfg, "intermediate_size", "ffn_dim", "n_inner", default=4 * hidden),
        vocab_size=_positive_int(cfg, "vocab_size", default=32000),
        max_position_embeddings=_positive_int(cfg, "max_position_embeddings", "n_positions", "max_seq_len"),
        dtype_bytes=_TORCH_DTYPE_BYTES[dtype_name],
        dtype=dtype_name,
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        rope_yarn=_rope_yarn(cfg),
        sliding_window=sliding_window,
        sliding_layers=min(sliding_layers, layers),
        experts=int(_get(cfg, "num_experts", "num_local_experts", "n_routed_experts") or 0),
        experts_per_token=int(_get(cfg, "num_experts_per_tok", "num_experts_per_token") or 0),
        moe_intermediate_size=int(cfg.get("moe_intermediate_size") or 0),
        quantization=quant_label,
        quant_bits=quant_bits,
        task=task,
        encoder=_encoder(config, task),
    )


def weight_bytes(spec: ModelSpec, parameters: Mapping[str, int] | None, *, max_element_bytes: float) -> int:
    """Bytes the weights take in accelerator memory.

    From the safetensors metadata (parameters per dtype) when given: packed quantized tensors (GPTQ/AWQ int32)
    are
    counted at their stored size. Floating-point tensors wider than `max_element_bytes` are loaded narrower
    (GPU
    runtimes load float32 checkpoints as 16-bit). Without metadata: the config's estimate x quantization bits
    or
    the config dtype.
    """
    if parameters:
        total = 0.0
        for dtype, count in parameters.items():
            size = DTYPE_BYTES.get(dtype.upper())
            if size is None:
                raise PlannerError(f"safetensors dtype {dtype!r} is unknown to the planner; add it to DTYPE_BYTES")
            if dtype.upper().startswith("F"):
                size = min(size, max_element_bytes)
            total += size * int(count)
        return int(total)
    per_param = spec.quant_bits / 8 if spec.quant_bits else min(spec.dtype_bytes, max_element_bytes)
    return int(spec.estimated_parameters() * per_param)
