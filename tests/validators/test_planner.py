"""The template planner: the published Qwen3-32B templates, other real configs, and memory properties."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from devstack.samples import tiny_vlm, tiny_whisper
from registry.runtimes import get_runtime
from registry.settings import Settings, load_settings
from validators.errors import PlannerError
from validators.model_spec import model_spec, weight_bytes
from validators.planner import (
    context_label,
    estimate_memory,
    family_short_name,
    fits,
    gguf_templates,
    is_derived_gguf,
    plan,
    template_id,
    tp_allowed,
)
from validators.tasks import UnsupportedTaskError

CONFIGS = Path(__file__).parent / "configs"


def _config(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CONFIGS / f"{name}.json").read_text())
    return data


@pytest.fixture(scope="module")
def policy() -> Settings:
    return load_settings()


def test_qwen3_32b_reproduces_the_four_published_vllm_templates_and_plans_mi300(policy: Settings) -> None:
    templates = plan("Qwen/Qwen3-32B", _config("qwen3-32b"), {"BF16": 32_762_123_264}, policy)
    assert [t.id for t in templates] == [
        "qwen--qwen3-32b--40k-nvidia-a100",
        "qwen--qwen3-32b--128k-nvidia-2xa100",
        "qwen--qwen3-32b--40k-nvidia-h100",
        "qwen--qwen3-32b--128k-nvidia-2xh100",
        # vLLM supports AMD: MI300X fits both contexts on one device (published only once validated).
        "qwen--qwen3-32b--40k-amd-mi300",
        "qwen--qwen3-32b--128k-amd-mi300",
    ]
    assert {t.runtime for t in templates} == {"vllm"}
    by_id = {t.id: t for t in templates}
    native = by_id["qwen--qwen3-32b--40k-nvidia-h100"]
    assert (native.count, native.context_length, native.accelerator_family) == (1, 40960, "H100_80GB")
    assert native.tool_call_parser == "hermes"
    assert native.reasoning_parser == "qwen3"
    assert "--rope-scaling" not in native.runtime_args
    args = native.runtime_args
    assert args[args.index("--max-model-len") + 1] == "40960"
    assert args[args.index("--tensor-parallel-size") + 1] == "1"
    assert args[args.index("--gpu-memory-utilization") + 1] == "0.90"

    extended = by_id["qwen--qwen3-32b--128k-nvidia-2xh100"]
    assert (extended.count, extended.context_length) == (2, 131072)
    rope = json.loads(extended.runtime_args[extended.runtime_args.index("--rope-scaling") + 1])
    assert rope == {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}
    assert extended.runtime_args[extended.runtime_args.index("--tensor-parallel-size") + 1] == "2"

    memory = native.memory
    assert memory is not None
    assert memory.kv_cache_bytes == 2 * 64 * 8 * 128 * 2 * 40960  # 10 GiB, concurrency 1
    assert memory.weights_bytes == 2 * 32_762_123_264
    assert memory.total_bytes <= memory.capacity_bytes == int(80 * 1024**3 * 0.90)
    assert "reserve 0.50 GiB" in memory.formula


def test_qwen3_32b_128k_does_not_fit_one_gpu_and_the_policy_can_keep_a_vendor_off(policy: Settings) -> None:
    spec = model_spec(_config("qwen3-32b"))
    weights = weight_bytes(spec, {"BF16": 32_762_123_264}, max_element_bytes=2)
    h100 = policy.accelerators["H100_80GB"]
    one = estimate_memory(spec, weights, get_runtime("vllm").memory, h100, 0.90, count=1, context=131072)
    assert not fits(one)
    # The policy can keep vLLM to NVIDIA: SGLang, next in policy order, is then AMD's default runtime for chat.
    nvidia_only = load_settings(runtimes={"vllm": {"vendors": ["nvidia"]}})
    amd = [t for t in plan("Qwen/Qwen3-32B", _config("qwen3-32b"), {"BF16": 32_762_123_264}, nvidia_only)]
    mi300 = [(t.id, t.runtime) for t in amd if t.vendor == "amd"]
    assert mi300 == [("qwen--qwen3-32b--40k-amd-mi300", "sglang"), ("qwen--qwen3-32b--128k-amd-mi300", "sglang")]


def test_a_template_on_another_runtime_than_the_default_names_it(policy: Settings) -> None:
    # A float32 checkpoint of 4B parameters does not fit hf-serve (which loads float32 as stored) on a 16 GiB
    # CPU; with llama.cpp enabled after hf-serve, CPU chat's default, llama.cpp (16-bit GGUF) takes the CPU
    # template, and its id says so. The GPU templates stay vLLM's, in the catalog's form.
    config = {**_config("smollm2-135m-instruct"), "torch_dtype": "float32"}
    params = {"F32": 4_000_000_000}
    without_llama = load_settings(runtimes={"llama-cpp": {"enabled": False}})
    assert not [t for t in plan("a/b", config, params, without_llama) if t.vendor == "cpu"]
    enabled = load_settings(runtimes={"llama-cpp": {"enabled": True}}).runtimes
    order = [name for name in enabled if name != "llama-cpp"] + ["llama-cpp"]
    with_llama = policy.model_copy(update={"runtimes": {name: enabled[name] for name in order}})
    templates = plan("a/b", config, params, with_llama)
    cpu = [(t.id, t.runtime, t.runtime_args) for t in templates if t.vendor == "cpu"]
    assert cpu == [("a--b--8k-cpu-llama-cpp", "llama-cpp", ("--n_ctx", "8192"))]
    assert {t.runtime for t in templates if t.vendor != "cpu"} == {"vllm"}
    assert all(t.id.endswith(("a100", "h100", "mi300")) for t in templates if t.vendor != "cpu")
    assert template_id("a/b", 8192, "cpu", 1, "cpu", runtime="llama-cpp", quantization="q4_k_m") == (
        "a--b--8k-cpu-llama-cpp-q4_k_m"
    )


def test_llama_3_1_8b_uses_its_configured_context_and_llama3_parser(policy: Settings) -> None:
    templates = plan(
        "meta-llama/Llama-3.1-8B-Instruct", _config("llama-3.1-8b-instruct"), {"BF16": 8_030_261_248}, policy
    )
    assert [t.id for t in templates] == [
        "meta-llama--llama-3.1-8b-instruct--128k-nvidia-a100",
        "meta-llama--llama-3.1-8b-instruct--128k-nvidia-h100",
        "meta-llama--llama-3.1-8b-instruct--128k-amd-mi300",
    ]
    assert all(t.tool_call_parser == "llama3_json" and t.reasoning_parser is None for t in templates)
    assert all("--rope-scaling" not in t.runtime_args for t in templates)  # llama3 rope is in config.json
    assert templates[0].max_concurrency == 3  # (72 - 14.96 - 0.5) GiB / 16 GiB per 128K sequence


def test_moe_counts_every_expert_and_needs_two_gpus(policy: Settings) -> None:
    config = _config("mixtral-8x7b-instruct")
    spec = model_spec(config)
    assert spec.experts == 8
    assert abs(spec.estimated_parameters() - 46_702_792_704) / 46_702_792_704 < 0.01
    templates = plan("mistralai/Mixtral-8x7B-Instruct-v0.1", config, {"BF16": 46_702_792_704}, policy)
    assert [t.id for t in templates] == [
        "mistralai--mixtral-8x7b-instruct-v0.1--32k-nvidia-2xa100",
        "mistralai--mixtral-8x7b-instruct-v0.1--32k-nvidia-2xh100",
        "mistralai--mixtral-8x7b-instruct-v0.1--32k-amd-mi300",
    ]
    # Without metadata the config estimate gives the same answer.
    assert [t.id for t in plan("mistralai/Mixtral-8x7B-Instruct-v0.1", config, None, policy)] == [
        t.id for t in templates
    ]


def test_sliding_window_bounds_the_kv_cache(policy: Settings) -> None:
    spec = model_spec(_config("mistral-7b-v0.1"))
    assert spec.sliding_window == 4096 and spec.sliding_layers == 32
    vllm = get_runtime("vllm").memory
    estimate = estimate_memory(spec, 0, vllm, policy.accelerators["H100_80GB"], 0.9, count=1, context=32768)
    assert estimate.kv_cache_bytes == 2 * 32 * 8 * 128 * 2 * 4096
    # use_sliding_window=false (Qwen2.5) keeps the full cache.
    assert model_spec(_config("qwen2.5-7b-instruct-awq")).sliding_window is None


def test_quantized_weights_are_sized_from_packed_tensors_and_labelled(policy: Settings) -> None:
    config = _config("qwen2.5-7b-instruct-awq")
    params = {"I32": 889_192_448, "F16": 1_089_994_752}
    templates = plan("Qwen/Qwen2.5-7B-Instruct-AWQ", config, params, policy)
    assert templates and all(t.quantization == "awq-int4" for t in templates)
    memory = templates[0].memory
    assert memory is not None and memory.weights_bytes == 889_192_448 * 4 + 1_089_994_752 * 2
    assert all(t.runtime != "hf-serve" for t in templates)  # the CPU runtime does not load AWQ
    assert {t.context_length for t in templates} == {32768, 131072}


def test_embedding_models_go_to_tei_on_gpus_and_infinity_on_cpu_with_no_kv_cache(policy: Settings) -> None:
    templates = plan("sentence-transformers/all-MiniLM-L6-v2", _config("all-minilm-l6-v2"), {"F32": 22_713_216}, policy)
    assert {t.runtime for t in templates if t.vendor != "cpu"} == {"tei"}
    assert all(t.task == "embeddings" and t.memory and t.memory.kv_cache_bytes == 0 for t in templates)
    cpu = [t for t in templates if t.vendor == "cpu"]
    assert [(t.id, t.runtime) for t in cpu] == [("sentence-transformers--all-minilm-l6-v2--0.5k-cpu", "infinity")]


def test_small_chat_model_gets_a_capped_cpu_template(policy: Settings) -> None:
    templates = plan(
        "HuggingFaceTB/SmolLM2-135M-Instruct", _config("smollm2-135m-instruct"), {"BF16": 134_515_008}, policy
    )
    cpu = [t for t in templates if t.accelerator_family == "cpu"]
    assert [t.id for t in cpu] == ["huggingfacetb--smollm2-135m-instruct--8k-cpu"]
    assert cpu[0].runtime == "hf-serve" and cpu[0].count == 1 and cpu[0].max_concurrency == 8
    assert cpu[0].runtime_args == ()  # transformers serve takes no template knob (its image runs it on CPU)


def test_ids_and_labels() -> None:
    assert family_short_name("A100_80GB") == "a100"
    assert family_short_name("MI_300_192GB") == "mi300"
    assert context_label(40960) == "40k" and context_label(131072) == "128k" and context_label(512) == "0.5k"
    assert template_id("Qwen/Qwen3-32B", 131072, "nvidia", 2, "H100_80GB") == "qwen--qwen3-32b--128k-nvidia-2xh100"


def test_bad_configs_raise_planner_errors_naming_the_key() -> None:
    with pytest.raises(PlannerError, match="num_hidden_layers"):
        model_spec({"hidden_size": 64, "num_attention_heads": 4, "max_position_embeddings": 128})
    with pytest.raises(PlannerError, match="multiple"):
        model_spec({**_config("qwen3-32b"), "num_key_value_heads": 7})
    with pytest.raises(PlannerError, match="torch_dtype"):
        model_spec({**_config("qwen3-32b"), "torch_dtype": "int4"})
    with pytest.raises(PlannerError, match="dtype"):
        weight_bytes(model_spec(_config("qwen3-32b")), {"Q9": 10}, max_element_bytes=2)


_HEADS = st.sampled_from([8, 16, 32, 40, 64, 96, 128])


@st.composite
def _generated(draw: st.DrawFn) -> tuple[dict[str, Any], int]:
    heads = draw(_HEADS)
    kv = draw(st.sampled_from([d for d in (1, 2, 4, 8, 16, heads) if heads % d == 0]))
    head_dim = draw(st.sampled_from([64, 96, 128, 256]))
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": heads * head_dim,
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
        "head_dim": head_dim,
        "num_hidden_layers": draw(st.integers(1, 128)),
        "intermediate_size": heads * head_dim * 3,
        "max_position_embeddings": draw(st.sampled_from([2048, 4096, 8192, 32768, 40960, 131072, 262144])),
        "torch_dtype": draw(st.sampled_from(["bfloat16", "float16", "float32"])),
        "vocab_size": 32000,
    }
    parameters = draw(st.integers(10_000_000, 700_000_000_000))
    return config, parameters


@hyp_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_generated())
def test_property_every_template_fits_and_the_next_smaller_count_does_not(
    policy: Settings, generated: tuple[dict[str, Any], int]
) -> None:
    config, parameters = generated
    spec = model_spec(config)
    dtype = {"bfloat16": "BF16", "float16": "F16", "float32": "F32"}[config["torch_dtype"]]
    for template in plan("org/model", config, {dtype: parameters}, policy):
        assert template.memory is not None and fits(template.memory)
        assert tp_allowed(spec, template.count)
        assert template.max_concurrency >= 1
        family = policy.accelerators[template.accelerator_family]
        profile = get_runtime(template.runtime).memory
        weights = weight_bytes(spec, {dtype: parameters}, max_element_bytes=profile.max_element_bytes)
        smaller = [c for c in family.counts if c < template.count and tp_allowed(spec, c)]
        if smaller:
            estimate = estimate_memory(
                spec,
                weights,
                profile,
                family,
                policy.runtimes[template.runtime].memory_utilization,
                count=max(smaller),
                context=template.context_length,
            )
            assert not fits(estimate)


GIB_BYTES = 1024**3


def test_speech_recognition_is_planned_as_an_encoder_decoder_on_hf_serve(policy: Settings) -> None:
    config = _config("whisper-large-v3")
    templates = plan("openai/whisper-large-v3", config, {"F16": 1_543_490_560}, policy)
    assert [(t.id, t.runtime, t.task) for t in templates] == [
        ("openai--whisper-large-v3--0.4k-cpu", "hf-serve", "automatic-speech-recognition")
    ]
    template = templates[0]
    memory = template.memory
    assert memory is not None and template.context_length == 448
    # The decoder holds the self-attention KV: 2 x 32 decoder layers x 20 heads x 64 x fp16 on CPU x 448 tokens.
    assert memory.kv_cache_bytes == 2 * 32 * 20 * 64 * 2 * 448
    # The encoder: one 30 s window of 1500 frames, plus the decoder's cross-attention KV over those frames.
    activations = (1500 * (3 * 1280 + 5120) + 20 * 1500 * 1500) * 2
    cross = 2 * 32 * 1280 * 1500 * 2
    assert memory.encoder_bytes == activations + cross
    assert memory.total_bytes == memory.weights_bytes + memory.kv_cache_bytes + memory.encoder_bytes + GIB_BYTES
    assert "audio encoder" in memory.formula and "cross-attention KV" in memory.formula
    assert template.tool_call_parser is None and template.max_concurrency >= 1


def test_vision_language_models_count_the_vision_encoder() -> None:
    config = _config("llava-1.5-7b")
    big_cpu = load_settings(accelerators={"cpu": {"memory_gib": 64}})  # 7B in fp16 does not fit the 16 GiB host
    templates = plan("llava-hf/llava-1.5-7b-hf", config, {"F16": 7_063_427_072}, big_cpu)
    cpu = [t for t in templates if t.vendor == "cpu"]
    assert [(t.id, t.runtime, t.task) for t in cpu] == [
        ("llava-hf--llava-1.5-7b-hf--4k-cpu", "hf-serve", "image-text-to-text")
    ]
    memory = cpu[0].memory
    assert memory is not None
    patches = (336 // 14) ** 2 + 1  # 577 tokens per image, CLS included
    assert memory.encoder_bytes == (patches * (3 * 1024 + 4096) + 16 * patches * patches) * 2
    assert memory.kv_cache_bytes == 2 * 32 * 32 * 128 * 2 * 4096  # the Llama text model's KV
    assert "vision encoder 1 x (577 tokens" in memory.formula
    assert all(t.task == "image-text-to-text" for t in templates)  # never planned as plain chat


def test_a_task_no_runtime_is_given_ends_unsupported(policy: Settings) -> None:
    whisper = _config("whisper-large-v3")
    chat_only = load_settings(runtimes={"hf-serve": {"tasks": ["chat"]}})
    with pytest.raises(UnsupportedTaskError, match=r"^unsupported task: automatic-speech-recognition .*no enabled"):
        plan("openai/whisper-large-v3", whisper, None, chat_only)
    t5 = {"architectures": ["T5ForConditionalGeneration"], "model_type": "t5", "is_encoder_decoder": True}
    with pytest.raises(UnsupportedTaskError, match=r"^unsupported task: text2text-generation"):
        plan("google/t5", t5, None, policy)
    # The tiny samples plan on the CPU runtime the policy gives their tasks.
    assert [t.id for t in plan("s/asr", tiny_whisper.whisper_config(), None, policy)] == ["s--asr--0.4k-cpu"]
    assert [t.id for t in plan("s/vlm", tiny_vlm.llava_config(), None, policy)] == ["s--vlm--2k-cpu"]


def test_each_derived_gguf_quantization_gets_a_llama_cpp_cpu_template() -> None:
    # The shipped policy enables llama.cpp after hf-serve: hf-serve keeps CPU chat's unquantized template, and
    # each GGUF quantization the derive step made gets its own llama.cpp template, named by runtime and type.
    settings = load_settings()
    config = _config("smollm2-135m-instruct")
    params = {"BF16": 134_515_008}
    cpu = [t for t in plan("a/b", config, params, settings) if t.vendor == "cpu"]
    assert [(t.id, t.runtime, t.quantization) for t in cpu] == [("a--b--8k-cpu", "hf-serve", None)]
    quantized = gguf_templates("a/b", config, params, settings, ("q8_0", "q4_k_m"))
    assert [(t.id, t.runtime, t.quantization, t.runtime_args) for t in quantized] == [
        ("a--b--8k-cpu-llama-cpp-q8_0", "llama-cpp", "q8_0", ("--n_ctx", "8192")),
        ("a--b--8k-cpu-llama-cpp-q4_k_m", "llama-cpp", "q4_k_m", ("--n_ctx", "8192")),
    ]
    assert all(is_derived_gguf(t) for t in quantized) and not any(is_derived_gguf(t) for t in cpu)
    assert gguf_templates("a/b", config, params, settings, ()) == ()
    off = load_settings(runtimes={"llama-cpp": {"enabled": False}})
    assert gguf_templates("a/b", config, params, off, ("q8_0",)) == ()
