"""The planner's view of a model's non-text encoder: Whisper's audio encoder, a vision-language model's vision
tower. Their weights are in the safetensors metadata already; what they add at serving time is counted here.

Per request, for an encoder of L layers, hidden size H, A heads, feed-forward size F over T tokens per item
(audio: the encoder's `max_source_positions` frames after the convolutions; vision: (image_size / patch_size)^2
patches + 1 class token), with `items` items per request (one 30 s window, one image):

    activations = items x (T x (3H + F) + A x T^2) x act_bytes   (the peak of one encoder layer: Q, K, V and the
                                                                   feed-forward hidden, plus the attention scores;
                                                                   layers run one after another)
    cross_kv    = items x 2 x D x H x T x kv_bytes               (encoder-decoders: the decoder's D cross-attention
                                                                   layers keep the encoder's keys and values)

A vision config without `image_size` (dynamic resolution, e.g. Qwen2-VL) is sized at 1024 patches per image
(448 x 448 at patch 14) and says so in the formula.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from validators.errors import PlannerError

DYNAMIC_VISION_TOKENS = 1024
IMAGES_PER_REQUEST = 1


@dataclass(frozen=True)
class EncoderSpec:
    kind: str  # "audio" or "vision"
    layers: int
    hidden_size: int
    heads: int
    intermediate_size: int
    tokens: int
    items: int = 1
    cross_attention_layers: int = 0
    note: str = ""

    def activation_bytes(self, act_bytes: float) -> int:
        t = self.tokens
        per_item = t * (3 * self.hidden_size + self.intermediate_size) + self.heads * t * t
        return int(self.items * per_item * act_bytes)

    def cross_kv_bytes(self, kv_bytes: float) -> int:
        return int(self.items * 2 * self.cross_attention_layers * self.hidden_size * self.tokens * kv_bytes)

    def total_bytes(self, act_bytes: float, kv_bytes: float) -> int:
        return self.activation_bytes(act_bytes) + self.cross_kv_bytes(kv_bytes)

    def formula(self, act_bytes: float, kv_bytes: float) -> str:
        text = (
            f"{self.kind} encoder {self.items} x ({self.tokens} tokens x (3 x {self.hidden_size} + "
            f"{self.intermediate_size}) + {self.heads} heads x {self.tokens}^2) x {act_bytes:g} B"
        )
        if self.cross_attention_layers:
            text += (
                f" + cross-attention KV 2 x {self.cross_attention_layers} layers x {self.hidden_size} x "
                f"{self.tokens} tokens x {kv_bytes:g} B"
            )
        return text + (f" ({self.note})" if self.note else "")


def _int(config: Mapping[str, Any], *keys: str) -> int | None:
    for key in keys:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _need(config: Mapping[str, Any], where: str, *keys: str) -> int:
    value = _int(config, *keys)
    if value is None:
        raise PlannerError(
            f"config.json {where} has none of {', '.join(keys)}; the planner needs it to size the encoder"
        )
    return value


def audio_encoder(config: Mapping[str, Any]) -> EncoderSpec:
    """Whisper-style speech encoder-decoders: encoder_* keys and max_source_positions at the top level."""
    hidden = _need(config, "", "d_model", "hidden_size")
    return EncoderSpec(
        kind="audio",
        layers=_need(config, "", "encoder_layers", "num_hidden_layers"),
        hidden_size=hidden,
        heads=_need(config, "", "encoder_attention_heads", "num_attention_heads"),
        intermediate_size=_int(config, "encoder_ffn_dim", "intermediate_size") or 4 * hidden,
        tokens=_need(config, "", "max_source_positions"),
        cross_attention_layers=_need(config, "", "decoder_layers", "num_hidden_layers"),
    )


def vision_encoder(config: Mapping[str, Any]) -> EncoderSpec:
    """The `vision_config` of a vision-language model."""
    vision = config.get("vision_config")
    if not isinstance(vision, Mapping):
        raise PlannerError("config.json has no vision_config; the planner needs it to size the vision encoder")
    hidden = _need(vision, "vision_config", "hidden_size", "embed_dim", "hidden_dim", "width")
    image, patch = _int(vision, "image_size"), _int(vision, "patch_size")
    if image and patch:
        tokens, note = (image // patch) ** 2 + 1, ""
    else:
        tokens, note = DYNAMIC_VISION_TOKENS, f"dynamic resolution: sized at {DYNAMIC_VISION_TOKENS} patches"
    return EncoderSpec(
        kind="vision",
        layers=_need(vision, "vision_config", "num_hidden_layers", "depth", "num_layers", "layers"),
        hidden_size=hidden,
        heads=_need(vision, "vision_config", "num_attention_heads", "num_heads", "heads"),
        intermediate_size=_int(vision, "intermediate_size", "mlp_dim") or 4 * hidden,
        tokens=tokens,
        items=IMAGES_PER_REQUEST,
        note=note,
    )
