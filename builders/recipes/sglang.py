"""SGLang: `sglang.launch_server`, the CUDA build from the package index, built here on the local base image.

Like vLLM: SGLang pins its own CUDA torch, so its lock does not take the local CPU torch; the image is several
GB, built on demand (`curate images build --runtime sglang`) or by the weekly deployment where `[images]
weekly_runtimes` lists it, with its wheels fetched for the build only (`transient_build`). The shared entrypoint
fetches and verifies the staged model and runs `python -m sglang.launch_server --model-path <verified dir>
--served-model-name <repo id>`.
"""

from __future__ import annotations

from builders.locks import read_lock
from builders.recipes.base import recipe_for
from builders.recipes.offline import (
    CUDA_INSTALL_LAYERS,
    ENTRYPOINT,
    ENTRYPOINT_LOCK_NAME,
    LOCAL_BASE_IMAGE,
    build_files,
)
from registry.runtimes.sglang import RUNTIME

REQUIREMENTS = (f"sglang=={RUNTIME.version}",)

RECIPE = recipe_for(
    RUNTIME,
    base_image=LOCAL_BASE_IMAGE,
    build_files=build_files(
        RUNTIME,
        read_lock(ENTRYPOINT_LOCK_NAME),
        layers=CUDA_INSTALL_LAYERS,
        extra_env=("SGLANG_DISABLE_USAGE_STATS=1",),
        trim=("torch/test",),
    ),
    requirements=REQUIREMENTS,
    lock=read_lock(RUNTIME.name),
    install_layers=CUDA_INSTALL_LAYERS,
    transient_build=True,
    entrypoint=ENTRYPOINT,
)
