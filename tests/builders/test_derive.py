"""What llama.cpp's quantizer log says about fallbacks, as the derive step records it (the derivation itself runs
for real in tests/flows/test_derive.py)."""

from __future__ import annotations

from builders.derive import fallbacks_in

# Lines as llama.cpp 0.3.36's quantizer prints them for SmolLM2-135M (hidden size 576) at q4_k_m.
LOG = """llama_model_quantize_impl: model size = 256.60 MiB
warning: blk.0.attn_q.weight - ncols 576 not divisible by 256 (required for type q4_K) -> falling back to q5_0
[ 1/ 272] blk.0.attn_q.weight - [ 576, 576, 1, 1], type = f16, converting to q5_0 .. size = 0.63 MiB -> 0.22 MiB
warning: blk.0.attn_v.weight - ncols 576 not divisible by 256 (required for type q6_K) -> falling back to q8_0
warning: blk.1.attn_q.weight - ncols 576 not divisible by 256 (required for type q4_K) -> falling back to q5_0
llama_model_quantize_impl: WARNING: 3 of 272 tensor(s) required fallback quantization
"""


def test_fallbacks_are_counted_per_type_llama_cpp_fell_back_to() -> None:
    assert fallbacks_in(LOG) == {"q5_0": 2, "q8_0": 1}
    assert fallbacks_in("quantize: wrote /out/x.gguf (q8_0, 145 bytes)") == {}
    assert fallbacks_in("using fallback quantization q5_0\n") == {"q5_0": 1}
