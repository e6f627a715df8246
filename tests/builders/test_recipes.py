"""Recipes: every runtime built here has one, built from its runtime declaration (registry/runtimes/)."""

from __future__ import annotations

import pytest

from builders.errors import NotBuildableError, RecipeError
from builders.recipes import all_recipes, get_recipe
from builders.recipes.model_entrypoint import MODEL_ID_FLAG
from builders.recipes.offline import ENTRYPOINT, ENTRYPOINT_REQUIREMENTS_FILE, ENTRYPOINT_SOURCE, split_lock
from registry.runtimes import all_runtimes, get_runtime
from registry.runtimes.interface import BuiltHere
from registry.settings import load_settings


def test_every_image_runtime_has_a_recipe_and_upstream_runtimes_say_why_not() -> None:
    settings = load_settings()
    for name in settings.images.runtimes:
        assert get_recipe(name).buildable, f"{name} is listed in images.runtimes but cannot be built here"
    assert set(all_recipes()) == {name for name, runtime in all_runtimes().items() if runtime.built_here}
    for upstream in ("tei", "tensorrt-llm", "nim"):
        with pytest.raises(NotBuildableError, match="no pinned digest"):
            get_recipe(upstream)


def test_unknown_runtime_names_the_known_ones() -> None:
    with pytest.raises(RecipeError, match="hf-serve"):
        get_recipe("nope")


@pytest.mark.parametrize("runtime", sorted(all_recipes()))
def test_a_recipe_takes_its_runtime_facts_from_the_runtime_declaration(runtime: str) -> None:
    recipe, declared = get_recipe(runtime), get_runtime(runtime)
    assert recipe.base_image and "Dockerfile" in recipe.build_files
    assert (recipe.version, recipe.server) == (declared.version, declared.server)
    assert isinstance(declared.image, BuiltHere) and recipe.accelerators == declared.image.vendors
    assert f"EXPOSE {declared.port}\n" in recipe.build_files["Dockerfile"]


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
    assert MODEL_ID_FLAG not in get_runtime(runtime).launch(()).argv  # the repo id goes to the entrypoint only
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
