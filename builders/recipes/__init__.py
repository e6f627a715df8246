"""Runtime recipes, one module per runtime; `get_recipe(runtime)` is what the planner and the builder read."""

from __future__ import annotations

from builders.errors import RecipeError
from builders.recipes import hf_serve, infinity, llama_cpp, nim, sglang, tei, tensorrt_llm, vllm
from builders.recipes.base import LaunchFlags, LaunchKnobs, Recipe

__all__ = ["LaunchFlags", "LaunchKnobs", "Recipe", "RecipeError", "all_recipes", "get_recipe"]

_RECIPES: dict[str, Recipe] = {
    recipe.runtime: recipe
    for recipe in (
        vllm.RECIPE,
        sglang.RECIPE,
        tensorrt_llm.RECIPE,
        nim.RECIPE,
        tei.RECIPE,
        llama_cpp.RECIPE,
        hf_serve.RECIPE,
        infinity.RECIPE,
    )
}


def all_recipes() -> dict[str, Recipe]:
    """Every known recipe by runtime name (the names of `[runtimes.*]` in curation.toml)."""
    return dict(_RECIPES)


def get_recipe(runtime: str) -> Recipe:
    try:
        return _RECIPES[runtime]
    except KeyError as exc:
        raise RecipeError(f"no recipe for runtime {runtime!r}; known runtimes: {', '.join(sorted(_RECIPES))}") from exc
