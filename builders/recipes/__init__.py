"""Image recipes, one module per runtime built here; `get_recipe(runtime)` is what the image builder reads.

Everything else about a runtime (tasks, vendors, flags, port, probe, memory, and whether its image is built here
or upstream) is its declaration in registry/runtimes/. Runtimes with upstream images (TEI, TensorRT-LLM, NIM) have
no recipe: `get_recipe` says why they are not built here.
"""

from __future__ import annotations

from builders.errors import NotBuildableError, RecipeError
from builders.recipes import hf_serve, infinity, llama_cpp, sglang, vllm
from builders.recipes.base import Recipe
from registry.runtimes import RuntimeSpecError, get_runtime

__all__ = ["Recipe", "RecipeError", "all_recipes", "get_recipe"]

_RECIPES: dict[str, Recipe] = {
    module.RECIPE.runtime: module.RECIPE for module in (vllm, sglang, llama_cpp, hf_serve, infinity)
}


def all_recipes() -> dict[str, Recipe]:
    """Every image built here, by runtime name (the names of `[runtimes.*]` in curation.toml)."""
    return dict(_RECIPES)


def get_recipe(runtime: str) -> Recipe:
    """The recipe of `runtime`; `NotBuildableError` for a runtime whose images are upstream, `RecipeError` for an
    unknown one."""
    if runtime in _RECIPES:
        return _RECIPES[runtime]
    try:
        declared = get_runtime(runtime)
    except RuntimeSpecError as exc:
        raise RecipeError(f"{exc}; images built here: {', '.join(sorted(_RECIPES))}") from exc
    why = "; ".join(filter(None, (declared.image_unavailable(vendor) for vendor in declared.vendors)))
    wrapped = "its upstream images are wrapped by `curate images build` once pinned (builders/wrap.py)"
    raise NotBuildableError(f"runtime {runtime} is not built here: {why or wrapped}")
