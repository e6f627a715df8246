"""The recipe record: how an image built here is built (everything else about a runtime is its declaration in
registry/runtimes/, which `recipe_for` takes the name, version, server command and vendors from).

Images are built here from the local base image and locked wheels (hf-serve, infinity, llama.cpp, vLLM, SGLang;
builders/recipes/offline.py). An image built here starts through the shared entrypoint
(builders/recipes/model_entrypoint.py), which fetches and verifies the staged weights and then starts the
runtime's own server as its `server` record says. The recipe's digest covers everything that changes the image,
so an unchanged recipe is never rebuilt.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from builders.errors import RecipeError
from registry.runtimes.interface import BuiltHere, Runtime, ServerCommand


class SourceBuild(BaseModel):
    """A locked package the index has no wheel for: compiled here once from its hash-pinned sdist.

    The runtime's lock pins the sdist by hash; `builders/local_wheels.py` builds the wheel with the build
    requirements locked in `locks/<runtime>-build.txt` and `env` (e.g. CMAKE_ARGS), and the image installs
    that wheel pinned by its own sha256 (recorded with its provenance beside it in the wheel cache).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    package: str
    env: dict[str, str] = Field(default_factory=dict)
    build_requirements: tuple[str, ...] = ()
    sdist_files: tuple[str, ...] = Field(
        default=(),
        description="files or folders of the sdist (relative to its top folder) the image also carries; the "
        "builder puts them, by their last path part, in the build-context folder `sdist-files/<package>/`",
    )


class Recipe(BaseModel):
    """How one runtime's image is built here, at one version."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    runtime: str
    version: str
    description: str = ""
    source: str = Field(default="", description="upstream project URL (OCI label org.opencontainers.image.source)")
    base_image: str | None = Field(default=None, description="local base image a buildable recipe starts from")
    upstream: str | None = Field(
        default=None,
        description="`repository@sha256:...` a wrapper (builders/wrap.py) is built FROM: pulled by digest before the "
        "build, never by tag",
    )
    build_files: dict[str, str] = Field(
        default_factory=dict, description="build context files (name -> text), Dockerfile included"
    )
    requirements: tuple[str, ...] = Field(default=(), description="top-level requirements (the lock's input)")
    lock: str = Field(
        default="",
        description="the hash-pinned wheel set installed with --no-index --require-hashes (builders/recipes/locks/)",
    )
    source_builds: tuple[SourceBuild, ...] = Field(default=(), description="locked packages compiled here")
    build_lock: str = Field(default="", description="the hash-pinned build requirements of `source_builds`")
    server: ServerCommand | None = Field(default=None, description="what the shared entrypoint starts")
    install_layers: tuple[tuple[str, ...], ...] = Field(
        default=(),
        description="package-name patterns (fnmatch) installed in layers of their own, in order, before the "
        "rest: bounds the disk a multi-GB install needs while a layer is committed",
    )
    transient_build: bool = Field(
        default=False,
        description="multi-GB image: its wheels are fetched for the build only and deleted after the push, and "
        "the engine keeps no copy (the registry does)",
    )
    entrypoint: tuple[str, ...] = ()
    accelerators: tuple[str, ...] = Field(
        default=("cpu",), description="vendors the image serves (its runtime's `BuiltHere.vendors`)"
    )

    @property
    def buildable(self) -> bool:
        return bool(self.build_files)

    @property
    def cpu_only(self) -> bool:
        """Images for CPUs only: their locks take the local CPU torch build (requirements/constraints.in)."""
        return set(self.accelerators) <= {"cpu"}

    def digest(self, extra: dict[str, Any] | None = None) -> str:
        """sha256 over the canonical JSON of the recipe (plus e.g. the wheel set): the build cache key."""
        payload = {"recipe": self.model_dump(mode="json"), "extra": extra or {}}
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def recipe_for(runtime: Runtime, **build: Any) -> Recipe:
    """The recipe of an image built here for `runtime`: its name, version, description, source, server command
    and vendors come from the runtime's declaration (registry/runtimes/), `build` gives the rest."""
    if not isinstance(runtime.image, BuiltHere):
        raise RecipeError(f"runtime {runtime.name} uses upstream images; it has no recipe built here")
    return Recipe(
        runtime=runtime.name,
        version=runtime.version,
        description=runtime.description,
        source=runtime.source,
        server=runtime.server,
        accelerators=runtime.image.vendors,
        **build,
    )
