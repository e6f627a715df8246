"""The wrapper recipe of an upstream image: FROM its pinned digest only, the entrypoint with its own Python."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from builders.errors import NotBuildableError
from builders.recipes import Recipe
from builders.wrap import LOADER, WRAPPED_ENTRYPOINT, wrapper_recipe
from flows.build import ImageOutcome, image_recipes
from registry.runtimes import get_runtime
from registry.runtimes.pins import PinnedDigest, Pins, save_pins
from registry.settings import load_settings

UPSTREAM = "ghcr.io/huggingface/text-embeddings-inference@sha256:" + "cd" * 32


def test_the_wrapper_is_built_from_the_pinned_digest_only() -> None:
    tei = get_runtime("tei")
    recipe = wrapper_recipe(tei, "cpu", UPSTREAM)
    dockerfile = recipe.build_files["Dockerfile"]
    assert f"\nFROM {UPSTREAM}\n" in dockerfile and recipe.upstream == UPSTREAM
    assert recipe.entrypoint == WRAPPED_ENTRYPOINT and WRAPPED_ENTRYPOINT[0] == LOADER
    assert recipe.server == tei.server and recipe.accelerators == ("cpu",)
    assert '"argv": [\n    "text-embeddings-router"' in recipe.build_files["server.json"]
    other = wrapper_recipe(tei, "cpu", UPSTREAM.replace("cd" * 32, "ef" * 32))
    assert other.digest() != recipe.digest()
    with pytest.raises(NotBuildableError, match="pinned digest only"):
        wrapper_recipe(tei, "cpu", "ghcr.io/huggingface/text-embeddings-inference:cpu-1.8.2")


def test_the_build_plans_one_wrapper_per_pinned_vendor(tmp_path: Path) -> None:
    path = tmp_path / "pins.json"
    reference = "ghcr.io/huggingface/text-embeddings-inference:cpu-1.8.2"
    pin = PinnedDigest(
        reference=reference, digest=UPSTREAM.split("@")[1], resolved_from=reference, pinned_at=datetime.now(UTC)
    )
    save_pins(Pins().with_pin("tei", "cpu", pin), path)
    settings = load_settings(images={"pins_file": str(path)})
    planned = image_recipes("tei", settings)
    recipes = [p for p in planned if isinstance(p, Recipe)]
    missing = [p for p in planned if isinstance(p, ImageOutcome)]
    assert [r.upstream for r in recipes] == [UPSTREAM]
    assert len(missing) == 1 and "not available (nvidia): no pinned digest" in missing[0].reason
    assert [r.runtime for r in image_recipes("hf-serve", settings)] == ["hf-serve"]
