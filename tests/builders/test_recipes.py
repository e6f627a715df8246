"""Recipes: every runtime of curation.toml has one, and launch arguments are spelt the runtime's way."""

from __future__ import annotations

import pytest

from builders.errors import RecipeError
from builders.recipes import all_recipes, get_recipe
from builders.recipes.model_entrypoint import MODEL_ID_FLAG
from builders.recipes.offline import ENTRYPOINT, ENTRYPOINT_REQUIREMENTS_FILE, ENTRYPOINT_SOURCE, split_lock
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
    assert args[:2] == ["--model-id", "Qwen/Qwen3-32B"]  # the shared entrypoint's: vLLM gets the local copy
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
    assert sglang[:2] == ["--model-id", "a/b"] and "--context-length" in sglang and "--tp-size" in sglang
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


@pytest.mark.parametrize("runtime", sorted(r for r, recipe in all_recipes().items() if recipe.buildable))
def test_every_image_built_here_starts_through_the_shared_entrypoint(runtime: str) -> None:
    """No runtime built here is ever handed a repo id: the entrypoint takes it and gives the server a local path."""
    recipe = get_recipe(runtime)
    assert recipe.server is not None and recipe.entrypoint == ENTRYPOINT
    assert recipe.flags.model == MODEL_ID_FLAG
    assert recipe.flags.served_model_name is None  # the entrypoint sets it (to the repo id) where the runtime can
    assert recipe.build_files["server.json"] == recipe.server.model_dump_json(indent=2) + "\n"
    assert recipe.build_files["entrypoint.py"] == ENTRYPOINT_SOURCE
    dockerfile = recipe.build_files["Dockerfile"]
    assert f'ENTRYPOINT ["{ENTRYPOINT[0]}", "{ENTRYPOINT[1]}"]' in dockerfile
    assert "--no-index" in dockerfile and "--require-hashes" in dockerfile and "COPY wheels" not in dockerfile
    # The entrypoint layer comes first, so it is the same layer in every image.
    assert dockerfile.index(ENTRYPOINT_REQUIREMENTS_FILE) < dockerfile.index("/opt/venv")


def test_large_gpu_images_are_never_built_by_default() -> None:
    settings = load_settings()
    for runtime in ("vllm", "sglang"):
        assert get_recipe(runtime).transient_build and not get_recipe(runtime).cpu_only
        assert runtime not in settings.images.runtimes  # weekly-curation (and so `make demo`) builds those


def test_a_lock_is_cut_into_install_layers_by_package_pattern() -> None:
    pinned = (("nvidia-cublas==1", "aa"), ("torch==2", "bb"), ("vllm==3", "cc"))
    lock = "".join(f"{pin} \\\n    --hash=sha256:{digest}\n" for pin, digest in pinned)
    parts = split_lock(lock, (("nvidia-*",), ("torch",)))
    assert parts == {
        "requirements.txt": "vllm==3 \\\n    --hash=sha256:cc\n",
        "requirements-1.txt": "nvidia-cublas==1 \\\n    --hash=sha256:aa\n",
        "requirements-2.txt": "torch==2 \\\n    --hash=sha256:bb\n",
    }
    vllm = get_recipe("vllm")
    names = [line.split("==")[0] for line in vllm.lock.splitlines() if "==" in line and not line.startswith(" ")]
    layers = split_lock(vllm.lock, vllm.install_layers)
    assert sum(part.count("--hash") for part in layers.values()) == vllm.lock.count("--hash")
    assert len(layers) == len(vllm.install_layers) + 1 and all(layers.values()) and names
