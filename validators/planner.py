"""Deployment-template planner: which runtime x accelerator family x count x context a model fits on.

Memory model (per accelerator, bytes), for tensor-parallel size TP = count (CPU: count 1):

    weights   = sum(parameters[dtype] x bytes(dtype)) / TP      (safetensors metadata; float32 loads as 16-bit
                                                                  on GPU runtimes; packed int4 counts as stored)
    kv_cache  = 2 x layers x kv_heads x head_dim x kv_bytes x context x concurrency / TP
                (sliding-window layers hold min(context, window) tokens; encoders have no KV cache)
    encoder   = speech and vision-language models: the audio / vision encoder's activation peak per request, plus
                an encoder-decoder's cross-attention KV (validators/encoder_spec.py); 0 for text-only models
    reserve   = the runtime's fixed per-accelerator overhead inside its budget (activation peak with chunked
                prefill, CUDA graphs, non-torch allocations)
    fits when   weights + kv_cache + encoder + reserve <= memory_gib x GiB x memory_utilization   (vLLM 0.90)

Every runtime fact (tasks, vendors, reserve, element widths, context cap, parsers, how each knob is spelt) is
the runtime's own declaration in registry/runtimes/ (`Runtime.memory`, `.parsers`, `.template_args`).

The task comes from the repository's metadata (validators/tasks.py); an encoder-decoder's KV cache is its
decoder's (`decoder_layers`, `max_target_positions` as the context). A task that no enabled runtime serves, or
that the pipeline does not serve at all, raises `UnsupportedTaskError` ("unsupported task: <task> ...").

`concurrency` is 1: every template guarantees at least one sequence at its full context. The template's
`max_concurrency` is how many full-context sequences (each with its encoder term) the budget left after
weights and reserve holds (capped per runtime). TP must divide both the attention heads and the KV heads (no
KV-head replication). `kv_bytes` is the runtime's KV element (2 on GPU runtimes), else the checkpoint dtype.

Contexts: the native `max_position_embeddings`; plus an extended one when config.json carries YaRN
`rope_scaling`, or when policy (`YARN_POLICY`, per model type, from the model family's documentation) allows
YaRN, e.g. Qwen3: factor 4 over 32768 = 131072, given to the runtime as its context-extension knob (vLLM
`--rope-scaling`, SGLang `--json-model-override-args`). CPU runtimes cap the context (`hf-serve`: 8192).

Runtime selection is policy (curation.toml `[runtimes]`, in order): for each accelerator family x context the
first enabled runtime that supports the family's vendor, that the policy gives the model's task on that vendor,
and that fits gets the template, at the smallest allowed count that fits. That vendor's *default runtime* for
the task is the first such runtime in policy order whether or not the model fits it (vLLM for chat on NVIDIA
and AMD, TEI for embeddings on NVIDIA, infinity for embeddings and hf-serve for the other tasks on CPU).

Ids: `<org>--<model>--<ctx>k-<vendor>-[<n>x]<family>[-<runtime>][-<quantization>]` lowercase, ctx =
round(context / 1024) (sub-1K contexts as e.g. `0.5k`), family's short name (`A100_80GB` -> `a100`,
`MI_300_192GB` -> `mi300`); the CPU family whose short name equals its vendor is written once (`--8k-cpu`).
`-<runtime>` is added only when the template's runtime is not its vendor's default runtime for the task (e.g.
`--32k-cpu-llama-cpp`), and `-<quantization>` only for a quantization the pipeline derives (e.g. a GGUF
`-q4_k_m`), never for a checkpoint's own: the id of the default runtime's template keeps the catalog's form
(`qwen--qwen3-32b--40k-nvidia-a100`). Family short names end in a digit or are a vendor name, and runtime
names are fixed words, so the parts never run into each other.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from registry.runtimes import Runtime, RuntimeSpecError, TemplateKnobs, all_runtimes
from registry.runtimes.interface import MemoryProfile
from registry.runtimes.llama_cpp import RUNTIME as LLAMA_CPP
from registry.schema import DeploymentTemplate, MemoryEstimate, ModelRef, model_slug
from registry.settings import AcceleratorFamily, RuntimePolicy, Settings
from validators.model_spec import ModelSpec, RopeExtension, model_spec, weight_bytes
from validators.tasks import (
    CHAT,
    EMBEDDINGS,
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


def family_short_name(family: str) -> str:
    """`A100_80GB` -> `a100`, `MI_300_192GB` -> `mi300`, `cpu` -> `cpu`."""
    stem = re.sub(r"[_-]?\d+\s*GB$", "", family, flags=re.IGNORECASE)
    return re.sub(r"[^a-z0-9]", "", stem.lower()) or family.lower()


def context_label(context: int) -> str:
    """40960 -> `40k`, 131072 -> `128k`, 512 -> `0.5k`."""
    if context >= 1024:
        return f"{round(context / 1024)}k"
    return f"{context / 1024:.1f}".rstrip("0").rstrip(".") + "k"


def template_id(
    repo_id: str,
    context: int,
    vendor: str,
    count: int,
    family: str,
    *,
    runtime: str | None = None,
    quantization: str | None = None,
) -> str:
    """The template id (module docstring): `runtime` only for a runtime other than the vendor's default for the
    task, `quantization` only for one the pipeline derives."""
    short = family_short_name(family)
    count_part = f"{count}x" if count > 1 else ""
    tail = f"{vendor}-{count_part}{short}" if short != vendor.lower() or count > 1 else vendor
    suffix = "".join(f"-{part}" for part in (runtime, quantization) if part)
    return f"{model_slug(repo_id)}--{context_label(context)}-{tail}{suffix}".lower()


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
    profile: MemoryProfile,
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


def template_knobs(
    spec: ModelSpec,
    runtime: Runtime,
    *,
    count: int,
    context: ContextOption,
    utilization: float,
    parsers: tuple[str | None, str | None],
) -> TemplateKnobs:
    """The knobs of one template; `Runtime.template_args` spells them (registry/runtimes/). A checkpoint's own
    quantization is not passed where the runtime reads it from config.json; `max_concurrency` is what the
    budget guarantees at full context, not a cap on the runtime's batch, so it is not passed either."""
    quantization = None if runtime.checkpoint_quantization else spec.quantization
    return TemplateKnobs(
        context_length=context.length,
        tensor_parallel=count,
        memory_utilization=utilization,
        rope_scaling=context.rope.as_json() if context.rope is not None else None,
        quantization=quantization,
        tool_call_parser=parsers[0],
        reasoning_parser=parsers[1],
    )


def serves(runtime: Runtime, policy: RuntimePolicy, task: str) -> bool:
    """Whether the policy gives `task` to this runtime (enabled, able to serve it, listed in its `tasks`)."""
    return policy.enabled and task in runtime.tasks and (not policy.tasks or task in policy.tasks)


def _runtimes_for(settings: Settings, task: str, vendor: str) -> Iterator[tuple[Runtime, RuntimePolicy]]:
    """The runtimes the policy gives `task` on `vendor`, in policy order: the runtime must support the vendor
    (registry/runtimes/), and the policy's `vendors`, when set, must list it."""
    known = all_runtimes()
    for name, policy in settings.runtimes.items():
        runtime = known.get(name)
        if runtime is None or not serves(runtime, policy, task) or vendor not in runtime.vendors:
            continue
        if policy.vendors and vendor not in policy.vendors:
            continue
        yield runtime, policy


GGUF_RUNTIME = LLAMA_CPP.name  # the runtime that serves the GGUF files the pipeline derives


def derives_gguf(settings: Settings, task: str) -> bool:
    """Whether the policy gives `task` to llama.cpp on CPU: then GGUF files are derived for the model
    (flows/derive.py) and planned as quantized llama.cpp templates (`gguf_templates`)."""
    return any(runtime.name == GGUF_RUNTIME for runtime, _ in _runtimes_for(settings, task, "cpu"))


def planned_task(config: Mapping[str, Any], settings: Settings, task: str | None = None) -> str:
    """The task to plan for (given, else from the config), or `UnsupportedTaskError` when the pipeline or the
    policy serves it nowhere."""
    task = task or task_from_config(config).require_supported()
    known = all_runtimes()
    runtimes = [n for n, p in settings.runtimes.items() if n in known and serves(known[n], p, task)]
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
            candidates = list(_runtimes_for(settings, task, family.vendor))
            for runtime, policy in candidates:
                # A runtime other than the vendor's default for the task is named in the id.
                named = runtime.name if runtime is not candidates[0][0] else None
                where = _Where(family_name, family, option, named)
                template = _smallest_fit(repo_id, spec, parameters, runtime, policy, where)
                if template is None:
                    continue
                if template.id not in seen:
                    seen.add(template.id)
                    templates.append(template.model_copy(update={"model": model, "task": task}))
                break
    return tuple(templates)


def gguf_templates(
    repo_id: str,
    config: Mapping[str, Any],
    parameters: Mapping[str, int] | None,
    settings: Settings,
    quantizations: tuple[str, ...],
    *,
    revision: str | None = None,
    task: str | None = None,
) -> tuple[DeploymentTemplate, ...]:
    """One llama.cpp CPU template per derived GGUF quantization (flows/derive.py), at the native context (capped),
    beside `plan`'s templates; its id ends `-<quantization>`. Memory is estimated from the unquantized
    parameters: an upper bound for a quantized file."""
    task = planned_task(config, settings, task)
    if not quantizations or not derives_gguf(settings, task):
        return ()
    spec = model_spec(config, task)
    model = ModelRef(repo_id=repo_id, revision=revision) if revision else None
    templates: list[DeploymentTemplate] = []
    for family_name, family in settings.accelerators.items():
        candidates = list(_runtimes_for(settings, task, family.vendor))
        found = [(r, p) for r, p in candidates if r.name == GGUF_RUNTIME]
        if not found:
            continue
        runtime, policy = found[0]
        named = runtime.name if runtime is not candidates[0][0] else None
        for quantization in quantizations:
            where = _Where(family_name, family, context_options(spec)[0], named, quantization)
            template = _smallest_fit(repo_id, spec, parameters, runtime, policy, where)
            if template is not None:
                templates.append(template.model_copy(update={"model": model, "task": task}))
    return tuple(templates)


def is_derived_gguf(template: DeploymentTemplate) -> bool:
    """Whether the template serves a GGUF the pipeline derived (its quantization is not the checkpoint's own:
    llama.cpp takes no quantized checkpoint)."""
    return template.runtime == GGUF_RUNTIME and template.quantization is not None


@dataclass(frozen=True)
class _Where:
    """One family x context a template is sought for, the runtime name its id carries (if any), and the derived
    quantization it serves (if any)."""

    family_name: str
    family: AcceleratorFamily
    option: ContextOption
    id_runtime: str | None = None
    derived: str | None = None


def _smallest_fit(
    repo_id: str,
    spec: ModelSpec,
    parameters: Mapping[str, int] | None,
    runtime: Runtime,
    policy: RuntimePolicy,
    where: _Where,
) -> DeploymentTemplate | None:
    family_name, family, option = where.family_name, where.family, where.option
    profile = runtime.memory
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
        parsers = runtime.parsers.get(parser_family(spec), (None, None)) if spec.task == CHAT else (None, None)
        knobs = template_knobs(
            spec, runtime, count=count, context=option, utilization=policy.memory_utilization, parsers=parsers
        )
        try:
            args = runtime.template_args(knobs)
        except RuntimeSpecError:
            return None  # the runtime cannot do what this template needs (YaRN, tensor parallelism): not its
        return DeploymentTemplate(
            id=template_id(
                repo_id,
                option.length,
                family.vendor,
                count,
                family_name,
                runtime=where.id_runtime,
                quantization=where.derived,
            ),
            runtime=runtime.name,
            accelerator_family=family_name,
            vendor=family.vendor,
            count=count,
            context_length=option.length,
            quantization=where.derived or spec.quantization,
            runtime_args=args,
            tool_call_parser=parsers[0],
            reasoning_parser=parsers[1],
            health_probe=runtime.health_path,
            port=runtime.port,
            max_concurrency=_max_concurrency(spec, profile, estimate),
            memory=estimate,
        )
    return None


def _max_concurrency(spec: ModelSpec, profile: MemoryProfile, estimate: MemoryEstimate) -> int:
    if spec.task == EMBEDDINGS or estimate.kv_cache_bytes == 0:
        return profile.embeddings_concurrency
    free = estimate.capacity_bytes - estimate.weights_bytes - estimate.reserve_bytes
    return max(1, min(profile.max_concurrency_cap, free // (estimate.kv_cache_bytes + estimate.encoder_bytes)))
