"""Recipes: every runtime of curation.toml has one, and launch arguments are spelt the runtime's way."""

from __future__ import annotations

import pytest

from builders.errors import RecipeError
from builders.recipes import all_recipes, get_recipe
from registry.settings import load_settings


def test_every_configured_runtime_has_a_recipe() -> None:
    settings = load_settings()
    assert set(settings.runtimes) <= set(all_recipes())
    for name in settings.images.runtimes:
        assert get_recipe(name).buildable, f"{name} is listed in images.runtimes but cannot be built here"


def test_unknown_runtime_names_the_known_ones() -> None:
    with pytest.raises(RecipeError, match="hf-serve"):
        get_recipe("nope")


@pytest.mark.parametrize("runtime", sorted(all_recipes()))
def test_recipe_shape(runtime: str) -> None:
    recipe = get_recipe(runtime)
    assert recipe.health_path.startswith("/")
    assert 0 < recipe.port < 65536
    assert recipe.accelerators and recipe.tasks
    # GPU runtimes reference upstream images per vendor; buildable ones start from the local base image.
    if recipe.buildable:
        assert recipe.base_image and "Dockerfile" in recipe.build_files
    else:
        assert set(recipe.upstream_images) <= set(recipe.accelerators)
        assert recipe.image_for(recipe.accelerators[0])


def test_vllm_launch_args_carry_every_template_knob() -> None:
    args = get_recipe("vllm").launch_args(
        "Qwen/Qwen3-32B",
        context_length=40960,
        tensor_parallel=2,
        quantization="fp8",
        tool_call_parser="hermes",
        reasoning_parser="qwen3",
        max_concurrency=64,
    )
    assert args[:2] == ["--model", "Qwen/Qwen3-32B"]
    pairs = dict(zip(args[::2], args[1::2], strict=False))
    assert "--max-model-len" in args and args[args.index("--max-model-len") + 1] == "40960"
    assert args[args.index("--tensor-parallel-size") + 1] == "2"
    assert args[args.index("--quantization") + 1] == "fp8"
    assert "--enable-auto-tool-choice" in args
    assert args[args.index("--tool-call-parser") + 1] == "hermes"
    assert args[args.index("--reasoning-parser") + 1] == "qwen3"
    assert args[args.index("--max-num-seqs") + 1] == "64"
    assert pairs  # flags and values interleave


def test_sglang_and_trtllm_spell_flags_their_way() -> None:
    sglang = get_recipe("sglang").launch_args("a/b", context_length=8192, tensor_parallel=4)
    assert sglang[:2] == ["--model-path", "a/b"] and "--context-length" in sglang and "--tp-size" in sglang
    trt = get_recipe("tensorrt-llm").launch_args("a/b", context_length=8192, tensor_parallel=2)
    assert trt[0] == "a/b" and "--max_seq_len" in trt and "--tp_size" in trt


def test_nim_is_configured_by_environment() -> None:
    nim = get_recipe("nim")
    assert nim.launch_args("meta/llama", context_length=4096) == []
    env = nim.launch_env("meta/llama", context_length=4096, tensor_parallel=2)
    assert env["NIM_MODEL_NAME"] == "meta/llama"
    assert env["NIM_MAX_MODEL_LEN"] == "4096"
    assert env["NIM_TENSOR_PARALLEL_SIZE"] == "2"


def test_cpu_runtime_refuses_what_it_cannot_do() -> None:
    hf = get_recipe("hf-serve")
    assert hf.launch_args("org/m", port=8123) == [
        "--model-id",
        "org/m",
        "--host",
        "0.0.0.0",
        "--port",
        "8123",
    ]
    with pytest.raises(RecipeError, match="tensor parallelism"):
        hf.launch_args("org/m", tensor_parallel=2)
    with pytest.raises(RecipeError, match="tool-call"):
        hf.launch_args("org/m", tool_call_parser="hermes")


def test_recipe_digest_changes_with_the_recipe() -> None:
    hf = get_recipe("hf-serve")
    assert hf.digest() == get_recipe("hf-serve").digest()
    changed = hf.model_copy(update={"version": hf.version + "-1"})
    assert changed.digest() != hf.digest()
    assert hf.digest(extra={"wheels": [["a.whl", 1]]}) != hf.digest()
