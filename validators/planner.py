"""Deployment-template planner: which runtime x accelerator family x count x context a model fits on.

Memory model (per accelerator, bytes), for tensor-parallel size TP = count (CPU: count 1):

    weights   = sum(parameters[dtype] x bytes(dtype)) / TP          (safetensors metadata; float32 loads as
    16-bit
                                                                      on GPU runtimes; packed int4 counts as
                                                                      stored)
    kv_cache  = 2 x layers x kv_heads x head_dim x kv_bytes x context x concurrency / TP
                (sliding-window layers hold min(context, window) tokens; encoders have no KV cache)
    encoder   = speech and vision-language models: the audio / vision encoder's activation peak per request, plus
                an encoder-decoder's cross-attention KV (validators/encoder_spec.py); 0 for text-only models
    reserve   = the runtime's fixed per-accelerator overhead inside its budget (activation peak with chunked
                prefill, CUDA graphs, non-torch allocations): vLLM 0.5 GiB, SGLang 1 GiB, TEI 1 GiB, CPU 1 GiB
    fits when   weights + kv_cache + encoder + reserve <= memory_gib x GiB x memory_utilization   (vLLM 0.90)

The task comes from the repository's metadata (validators/tasks.py); an encoder-decoder's KV cache is its
decoder's (`decoder_layers`, `max_target_positions` as the context). A task that no enabled runtime serves, or
that the pipeline does not serve at all, raises `UnsupportedTaskError` ("unsupported task: <task> ...").

`concurrency` is 1: every template guarantees at least one sequence at its full context. The template's
`max_concurrency` is how many full-context sequences (each with its encoder term) the budget left after
weights and reserve holds (capped per runtime). TP must divide both the attention heads and the KV heads (no
KV-head replication).
`kv_bytes` is 2 (bf16/fp16 KV cache) on GPU runtimes, the checkpoint dtype on CPU.

Contexts: the native `max_position_embeddings`; plus an extended one when config.json carries YaRN
`rope_scaling`, or when policy (`YARN_POLICY`, per model type, from the model family's documentation) allows
YaRN, e.g. Qwen3: factor 4 over 32768 = 131072, enabled with vLLM `--rope-scaling` and `--max-model-len`.
CPU runtimes cap the context (`hf-serve`: 8192).

For each accelerator family x context the first enabled runtime (settings order) that serves the model's task
on
that vendor and fits gets the template, at the smallest allowed count that fits: template ids carry no
runtime,
so one runtime per id. Ids: `<org>--<model>--<ctx>k-<vendor>-[<n>x]<family>` lowercase, ctx = round(context /
1024) (sub-1K contexts as e.g. `0.5k`), family's short name (`A100_80GB` -> `a100`, `MI_300_192GB` ->
`mi300`);
the CPU family whose short name equals its vendor is written once (`--8k-cpu`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from registry.schema import DeploymentTemplate, MemoryEstimate, ModelRef, model_slug
from registry.settings import AcceleratorFamily, RuntimePolicy, Settings
from validators.model_spec import ModelSpec, RopeExtension, model_spec, weight_bytes
from validators.tasks import (
    CHAT,
    EMBEDDINGS,
    SPEECH_RECOGNITION,
    VISION_CHAT,
    TaskDecision,
    UnsupportedTaskError,
    task_from_config,
)

GIB = 1024**3

# Model types whose documentation allows YaRN beyond the native context, applied when config.json has none.
YARN_POLICY: dict[str, RopeExtension] = {
    "qwen3": RopeExtension(factor=4.0, original=32768),
    "qwen3_moe": RopeExtension(factor=4.0, original=32768),
    "qwen2": RopeExtension(factor=4.0, original=32768),
}


@dataclass(frozen=True)
class RuntimeProfile:
    """What the planner assumes about one runtime."""

    name: str
    tasks: frozenset[str]
    reserve_bytes: int
    max_element_bytes: float = 2
    kv_dtype_bytes: float | None = 2
    context_cap: int | None = None
    max_concurrency_cap: int = 256
    embeddings_concurrency: int = 32
    serves_quantized: bool = True
    port: int = 8000
    health_probe: str = "/health"
    parsers: Mapping[str, tuple[str | None, str | None]] = field(default_factory=dict)


_VLLM_PARSERS: dict[str, tuple[str | None, str | None]] = {
    "qwen3": ("hermes", "qwen3"),
    "qwen3_moe": ("hermes", "qwen3"),
    "qwen2": ("hermes", None),
    "qwen2_moe": ("hermes", None),
    "llama3": ("llama3_json", None),
    "llama4": ("llama4_pythonic", None),
    "mistral": ("mistral", None),
    "deepseek_v3": ("deepseek_v3", "deepseek_r1"),
    "granite": ("granite", None),
    "gpt_oss": ("openai", "openai_gptoss"),
}
_SGLANG_PARSERS: dict[str, tuple[str | None, str | None]] = {
    "qwen3": ("qwen25", "qwen3"),
    "qwen3_moe": ("qwen25", "qwen3"),
    "qwen2": ("qwen25", None),
    "llama3": ("llama3", None),
    "mistral": ("mistral", None),
    "deepseek_v3": ("deepseekv3", "deepseek-r1"),
}

PROFILES: dict[str, RuntimeProfile] = {
    "vllm": RuntimeProfile("vllm", frozenset({"chat"}), reserve_bytes=GIB // 2, parsers=_VLLM_PARSERS),
    "sglang": RuntimeProfile("sglang", frozenset({"chat"}), reserve_bytes=GIB, parsers=_SGLANG_PARSERS, port=30000),
    "tensorrt-llm": RuntimeProfile("tensorrt-llm", frozenset({"chat"}), reserve_bytes=GIB),
    "nim": RuntimeProfile("nim", frozenset({"chat"}), reserve_bytes=GIB, health_probe="/v1/health/ready"),
    "llama-cpp": RuntimeProfile("llama-cpp", frozenset({"chat"}), reserve_bytes=GIB // 2),
    "tei": RuntimeProfile(
        "tei", frozenset({"embeddings"}), reserve_bytes=GIB, max_element_bytes=4, kv_dtype_bytes=None
    ),
    "infinity": RuntimeProfile(
        "infinity", frozenset({"embeddings"}), reserve_bytes=GIB, max_element_bytes=4, kv_dtype_bytes=None
    ),
    "hf-serve": RuntimeProfile(
        "hf-serve",
        frozenset({CHAT, SPEECH_RECOGNITION, VISION_CHAT}),
        reserve_bytes=GIB,
        max_element_bytes=8,
        kv_dtype_bytes=None,
        context_cap=8192,
        max_concurrency_cap=8,
        serves_quantized=False,
    ),
}


def family_short_name(family: str) -> str:
    """`A100_80GB` -> `a100`, `MI_300_192GB` -> `mi300`, `cpu` -> `cpu`."""
    stem = re.sub(r"[_-]?\d+\s*GB$", "", family, flags=re.IGNORECASE)
    return re.sub(r"[^a-z0-9]", "", stem.lower()) or family.lower()


def context_label(context: int) -> str:
    """40960 -> `40k`, 131072 -> `128k`, 512 -> `0.5k`."""
    if context >= 1024:
        return f"{round(context / 1024)}k"
    return f"{context / 1024:.1f}".rstrip("0").rstrip(".") + "k"


def template_id(repo_id: str, context: int, vendor: str, count: int, family: str) -> str:
    short = family_short_name(family)
    count_part = f"{count}x" if count > 1 else ""
    tail = f"{vendor}-{count_part}{short}" if short != vendor.lower() or count > 1 else vendor
    return f"{model_slug(repo_id)}--{context_label(context)}-{tail}".lower()


@dataclass(frozen=True)
class ContextOption:
    length: int
    rope: RopeExtension | None = None  # set when the runtime must be told to enable YaRN


def context_options(spec: ModelSpec) -> tuple[ContextOption, ...]:
    """The native context and, where config or policy allows YaRN, the extended one."""
    if spec.task != CHAT:  # encoders and encoder-decoders: the native context only
        return (ContextOption(spec.max_position_embeddings),)
    if spec.rope_yarn is not None:  # already enabled by config.json: the runtime reads it from there
        return (ContextOption(max(spec.max_position_embeddings, spec.rope_yarn.context)),)
    options = [ContextOption(spec.max_position_embeddings)]
    policy = YARN_POLICY.get(spec.model_type)
    if policy is not None and policy.context > spec.max_position_embeddings:
        options.append(ContextOption(policy.context, rope=policy))
    return tuple(options)


def parser_family(spec: ModelSpec) -> str:
    if spec.model_type == "llama":
        return "llama3" if spec.vocab_size >= 128000 else "llama"
    return spec.model_type


def estimate_memory(
    spec: ModelSpec,
    weights: int,
    profile: RuntimeProfile,
    family: AcceleratorFamily,
    utilization: float,
    *,
    count: int,
    context: int,
    concurrency: int = 1,
) -> MemoryEstimate:
    """The memory model of the module docstring for one accelerator of a `count`-way deployment."""
    kv_bytes = profile.kv_dtype_bytes if profile.kv_dtype_bytes is not None else spec.dtype_bytes
    per_token = spec.kv_bytes_per_token(kv_bytes, context)
    weights_per = math.ceil(weights / count)
    kv_per = math.ceil(per_token * context * concurrency / count)
    act_bytes = min(spec.dtype_bytes, profile.max_element_bytes)
    encoder = spec.encoder
    encoder_per = math.ceil(encoder.total_bytes(act_bytes, kv_bytes) * concurrency / count) if encoder else 0
    capacity = int(family.memory_gib * GIB * utilization)
    total = weights_per + kv_per + encoder_per + profile.reserve_bytes
    kv_text = (
        f"KV 2 x {spec.layers} layers x {spec.kv_heads} kv_heads x {spec.head_dim} head_dim x {kv_bytes:g} B"
        f" x {context} tokens x {concurrency} seq / {count} = {kv_per / GIB:.2f} GiB"
        if per_token
        else "KV 0 (encoder, no KV cache)"
    )
    if spec.sliding_layers and per_token:
        kv_text += f" ({spec.sliding_layers} sliding layers hold <= {spec.sliding_window} tokens)"
    if encoder is not None:
        kv_text += f" + {encoder.formula(act_bytes, kv_bytes)} / {count} = {encoder_per / GIB:.4f} GiB"
    formula = (
        f"weights {weights / GIB:.2f} GiB / {count} = {weights_per / GIB:.2f} GiB + {kv_text}"
        f" + reserve {profile.reserve_bytes / GIB:.2f} GiB = {total / GIB:.2f} GiB"
        f" {'<=' if total <= capacity else '>'} {family.memory_gib:g} GiB x {utilization:.2f}"
        f" = {capacity / GIB:.2f} GiB"
    )
    return MemoryEstimate(
        weights_bytes=weights_per,
        kv_cache_bytes=kv_per,
        encoder_bytes=encoder_per,
        reserve_bytes=profile.reserve_bytes,
        total_bytes=total,
        capacity_bytes=capacity,
        formula=formula,
    )


def fits(estimate: MemoryEstimate) -> bool:
    return estimate.total_bytes <= estimate.capacity_bytes


def tp_allowed(spec: ModelSpec, count: int) -> bool:
    """Tensor parallelism over `count` devices needs count | attention heads and count | KV heads."""
    return spec.attention_heads % count == 0 and spec.kv_heads % count == 0


def runtime_args(
    profile: RuntimeProfile,
    spec: ModelSpec,
    *,
    count: int,
    context: ContextOption,
    utilization: float,
    parsers: tuple[str | None, str | None],
) -> tuple[str, ...]:
    tool, reasoning = parsers
    args: list[str] = []
    if profile.name == "vllm":
        args += ["--max-model-len", str(context.length), "--tensor-parallel-size", str(count)]
        args += ["--gpu-memory-utilization", f"{utilization:.2f}"]
        if context.rope is not None:
            args += ["--rope-scaling", json.dumps(context.rope.as_json(), separators=(",", ":"))]
        if tool:
            args += ["--enable-auto-tool-choice", "--tool-call-parser", tool]
        if reasoning:
            args += ["--reasoning-parser", reasoning]
    elif profile.name == "sglang":
        args += ["--context-length", str(context.length), "--tp-size", str(count)]
        args += ["--mem-fraction-static", f"{utilization:.2f}"]
        if context.rope is not None:
            override = {"rope_scaling": context.rope.as_json()}
            args += ["--json-model-override-args", json.dumps(override, separators=(",", ":"))]
        if tool:
            args += ["--tool-call-parser", tool]
        if reasoning:
            args += ["--reasoning-parser", reasoning]
    elif profile.name == "tensorrt-llm":
        args += ["--max_seq_len", str(context.length), "--tp_size", str(count)]
    elif profile.name == "llama-cpp":
        args += ["--n_ctx", str(context.length)]
    elif profile.name == "tei":
        args += ["--max-batch-tokens", str(max(16384, context.length)), "--auto-truncate"]
    elif profile.name == "hf-serve":
        args += ["--device", "cpu" if count == 1 else "auto"]
    return tuple(args)


def serves(profile: RuntimeProfile, policy: RuntimePolicy, task: str) -> bool:
    """Whether the policy gives `task` to this runtime (enabled, able to serve it, listed in its `tasks`)."""
    return policy.enabled and task in profile.tasks and (not policy.tasks or task in policy.tasks)


def _runtimes_for(settings: Settings, task: str, vendor: str) -> Iterator[tuple[RuntimeProfile, RuntimePolicy]]:
    for name, policy in settings.runtimes.items():
        profile = PROFILES.get(name)
        if profile is None or not serves(profile, policy, task):
            continue
        if policy.vendors and vendor not in policy.vendors:
            continue
        yield profile, policy


def planned_task(config: Mapping[str, Any], settings: Settings, task: str | None = None) -> str:
    """The task to plan for (given, else from the config), or `UnsupportedTaskError` when the pipeline or the
    policy serves it nowhere."""
    task = task or task_from_config(config).require_supported()
    runtimes = [n for n, p in settings.runtimes.items() if n in PROFILES and serves(PROFILES[n], p, task)]
    if not runtimes:
        why = "no enabled runtime in curation.toml [runtimes] serves it (see each runtime's `tasks`)"
        raise UnsupportedTaskError(TaskDecision(task, False, "policy", why))
    return task


def plan(
    repo_id: str,
    config: Mapping[str, Any],
    parameters: Mapping[str, int] | None,
    settings: Settings,
    *,
    revision: str | None = None,
    task: str | None = None,
) -> tuple[DeploymentTemplate, ...]:
    """Every template the model fits: per family x context, the first runtime that fits, at its smallest
    count. `task` defaults to what config.json says (validators/tasks.py)."""
    task = planned_task(config, settings, task)
    spec = model_spec(config, task)
    model = ModelRef(repo_id=repo_id, revision=revision) if revision else None
    templates: list[DeploymentTemplate] = []
    seen: set[str] = set()
    for family_name, family in settings.accelerators.items():
        for option in context_options(spec):
            for profile, policy in _runtimes_for(settings, task, family.vendor):
                template = _smallest_fit(repo_id, spec, parameters, profile, policy, family_name, family, option)
                if template is None:
                    continue
                if template.id not in seen:
                    seen.add(template.id)
                    templates.append(template.model_copy(update={"model": model, "task": task}))
                break
    return tuple(templates)


def _smallest_fit(
    repo_id: str,
    spec: ModelSpec,
    parameters: Mapping[str, int] | None,
    profile: RuntimeProfile,
    policy: RuntimePolicy,
    family_name: str,
    family: AcceleratorFamily,
    option: ContextOption,
) -> DeploymentTemplate | None:
    if spec.quantization is not None and not profile.serves_quantized:
        return None
    if profile.context_cap is not None and option.length > profile.context_cap:
        if option.rope is not None:
            return None  # an extended context beyond the cap adds nothing
        option = ContextOption(profile.context_cap)
    weights = weight_bytes(spec, parameters, max_element_bytes=profile.max_element_bytes)
    for count in sorted(family.counts):
        if not tp_allowed(spec, count):
            continue
        estimate = estimate_memory(
            spec, weights, profile, family, policy.memory_utilization, count=count, context=option.length
        )
        if not fits(estimate):
            continue
        parsers = profile.parsers.get(parser_family(spec), (None, None)) if spec.task == CHAT else (None, None)
        return DeploymentTemplate(
            id=template_id(repo_id, option.length, family.vendor, count, family_name),
            runtime=profile.name,
            accelerator_family=family_name,
            vendor=family.vendor,
            count=count,
            context_length=option.length,
            quantization=spec.quantization,
            runtime_args=runtime_args(
                profile,
                spec,
                count=count,
                context=option,
                utilization=policy.memory_utilization,
                parsers=parsers,
            ),
            tool_call_parser=parsers[0],
            reasoning_parser=parsers[1],
            health_probe=profile.health_probe,
            port=profile.port,
            max_concurrency=_max_concurrency(spec, profile, estimate, option.length, count),
            memory=estimate,
        )
    return None


def _max_concurrency(
    spec: ModelSpec, profile: RuntimeProfile, estimate: MemoryEstimate, context: int, count: int
) -> int:
    if spec.task == EMBEDDINGS or estimate.kv_cache_bytes == 0:
        return profile.embeddings_concurrency
    free = estimate.capacity_bytes - estimate.weights_bytes - estimate.reserve_bytes
    return max(1, min(profile.max_concurrency_cap, free // (estimate.kv_cache_bytes + estimate.encoder_bytes)))
