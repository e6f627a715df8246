"""The runtime model (registry/runtimes/): every runtime the policy names exists, every template's argv is exactly
what its runtime renders, and each runtime spells its knobs its own way."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from registry.runtimes import RuntimeSpecError, TemplateKnobs, all_runtimes, get_runtime
from registry.runtimes.interface import BuiltHere, Upstream
from registry.schema import DeploymentTemplate
from registry.settings import Settings, load_settings
from validators.model_spec import model_spec
from validators.planner import context_options, plan
from validators.tasks import SUPPORTED_TASKS

CONFIGS = Path(__file__).parents[1] / "validators" / "configs"
MODELS: dict[str, tuple[str, dict[str, int]]] = {
    "Qwen/Qwen3-32B": ("qwen3-32b", {"BF16": 32_762_123_264}),
    "HuggingFaceTB/SmolLM2-135M-Instruct": ("smollm2-135m-instruct", {"BF16": 134_515_008}),
    "sentence-transformers/all-MiniLM-L6-v2": ("all-minilm-l6-v2", {"F32": 22_713_216}),
    "openai/whisper-large-v3": ("whisper-large-v3", {"F16": 1_543_490_560}),
}


def _config(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CONFIGS / f"{name}.json").read_text())
    return data


def _only(runtime: str) -> Settings:
    """The policy with only `runtime` enabled, on every vendor and task it supports."""
    names = load_settings().runtimes
    return load_settings(runtimes={name: {"enabled": name == runtime, "vendors": [], "tasks": []} for name in names})


def test_every_runtime_the_policy_names_exists() -> None:
    settings = load_settings()
    known = set(all_runtimes())
    assert set(settings.runtimes) <= known
    assert set(settings.images.runtimes) | set(settings.images.weekly_runtimes) <= known
    assert known == {"vllm", "sglang", "tensorrt-llm", "nim", "tei", "llama-cpp", "hf-serve", "infinity"}


@pytest.mark.parametrize("name", sorted(all_runtimes()))
def test_a_runtime_declares_itself_consistently(name: str) -> None:
    runtime = get_runtime(name)
    assert set(runtime.tasks) <= set(SUPPORTED_TASKS), "task names are validators/tasks.py's"
    assert runtime.health_path.startswith("/")
    if isinstance(runtime.image, BuiltHere):
        assert set(runtime.image.vendors) <= set(runtime.vendors)
    else:
        assert isinstance(runtime.image, Upstream)
        assert set(runtime.image.images) <= set(runtime.vendors)
        for image in runtime.image.images.values():
            tag = image.reference.rsplit(":", 1)[-1]
            assert "/" not in tag and tag != "latest", f"{image.reference}: a version tag, never latest"


def _knobs(template: DeploymentTemplate, settings: Settings, config: dict[str, Any]) -> TemplateKnobs:
    """The knobs a template says it has, read back from its own fields (and the YaRN option of its context)."""
    rope = next(
        (o.rope for o in context_options(model_spec(config, template.task)) if o.length == template.context_length),
        None,
    )
    return TemplateKnobs(
        context_length=template.context_length,
        tensor_parallel=template.count,
        memory_utilization=settings.runtimes[template.runtime].memory_utilization,
        rope_scaling=rope.as_json() if rope is not None else None,
        tool_call_parser=template.tool_call_parser,
        reasoning_parser=template.reasoning_parser,
    )


@pytest.mark.parametrize("name", sorted(all_runtimes()))
def test_every_template_argv_is_what_its_runtime_renders(name: str) -> None:
    settings = _only(name)
    runtime = get_runtime(name)
    planned = 0
    for repo_id, (config_name, parameters) in MODELS.items():
        config = _config(config_name)
        task = "embeddings" if "MiniLM" in repo_id else None
        if (task or ("automatic-speech-recognition" if "whisper" in repo_id else "chat")) not in runtime.tasks:
            continue
        for template in plan(repo_id, config, parameters, settings, task=task):
            assert template.runtime == name
            assert template.runtime_args == runtime.template_args(_knobs(template, settings, config))
            assert (template.port, template.health_probe) == (runtime.port, runtime.health_path)
            planned += 1
    assert planned, f"no reference model planned a {name} template"


def test_each_runtime_spells_a_qwen3_128k_template_its_own_way() -> None:
    rope = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}
    knobs = TemplateKnobs(131072, 2, 0.9, rope, None, "hermes", "qwen3")
    rope_json = json.dumps(rope, separators=(",", ":"))
    assert get_runtime("vllm").template_args(knobs) == (
        "--max-model-len", "131072", "--tensor-parallel-size", "2", "--gpu-memory-utilization", "0.90",
        "--rope-scaling", rope_json, "--enable-auto-tool-choice", "--tool-call-parser", "hermes",
        "--reasoning-parser", "qwen3",
    )  # fmt: skip
    sglang = TemplateKnobs(131072, 2, 0.88, rope, None, "qwen25", "qwen3")
    assert get_runtime("sglang").template_args(sglang) == (
        "--context-length", "131072", "--tp-size", "2", "--mem-fraction-static", "0.88",
        "--json-model-override-args", json.dumps({"rope_scaling": rope}, separators=(",", ":")),
        "--tool-call-parser", "qwen25", "--reasoning-parser", "qwen3",
    )  # fmt: skip
    native = TemplateKnobs(context_length=40960, tensor_parallel=2)
    assert get_runtime("tensorrt-llm").template_args(native) == ("--max_seq_len", "40960", "--tp_size", "2")
    assert get_runtime("nim").template_args(native) == ("NIM_MAX_MODEL_LEN=40960", "NIM_TENSOR_PARALLEL_SIZE=2")
    with pytest.raises(RuntimeSpecError, match="context extension"):
        get_runtime("tensorrt-llm").template_args(knobs)


def test_cpu_and_embedding_runtimes_and_what_they_cannot_do() -> None:
    assert get_runtime("llama-cpp").template_args(TemplateKnobs(context_length=8192)) == ("--n_ctx", "8192")
    assert get_runtime("tei").template_args(TemplateKnobs(context_length=512)) == (
        "--max-batch-tokens", "16384", "--auto-truncate",
    )  # fmt: skip
    assert get_runtime("tei").launch((), port=9000, host="127.0.0.1").argv == (
        "--hostname", "127.0.0.1", "--port", "9000",
    )  # fmt: skip
    hf = get_runtime("hf-serve")
    assert hf.template_args(TemplateKnobs(context_length=8192, max_concurrency=8)) == ()
    assert hf.launch((), port=8123).argv == ("--host", "0.0.0.0", "--port", "8123")
    with pytest.raises(RuntimeSpecError, match="tensor parallelism"):
        hf.template_args(TemplateKnobs(tensor_parallel=2))
    with pytest.raises(RuntimeSpecError, match="tool-call"):
        hf.template_args(TemplateKnobs(tool_call_parser="hermes"))


def test_a_runtime_configured_by_environment_gets_its_knobs_as_variables() -> None:
    nim = get_runtime("nim")
    launch = nim.launch(("NIM_MAX_MODEL_LEN=4096",), port=8001)
    assert launch.argv == ()
    assert launch.env == {"NIM_SERVER_PORT": "8001", "NIM_MAX_MODEL_LEN": "4096"}


def test_image_availability_is_declared_per_vendor() -> None:
    vllm = get_runtime("vllm")
    assert vllm.image_unavailable("nvidia") is None
    assert "for nvidia only, not amd" in (vllm.image_unavailable("amd") or "")
    assert "does not run on amd" in (get_runtime("hf-serve").image_unavailable("amd") or "")
    for name in ("tei", "tensorrt-llm", "nim"):
        reason = get_runtime(name).image_unavailable("nvidia") or ""
        assert "no pinned digest" in reason
