"""vLLM: the OpenAI-compatible server, the CUDA build from the package index, built here on the local base image.

vLLM's wheel pins its own CUDA torch (and the NVIDIA CUDA libraries as wheels), so this lock does not take the
local CPU torch (scripts/lock.py applies requirements/constraints.in to CPU images only). The image is several
GB: it is built on demand (`curate images build --runtime vllm`) or by the weekly `build-runtime-images`
deployment where `[images] weekly_runtimes` lists it, never by `make test` or `make demo`; its wheels are fetched
for the build only and the engine keeps no copy after the push (`transient_build`).

The shared entrypoint fetches and verifies the staged model and runs `vllm serve <verified dir>
--served-model-name <repo id>`; a caller can never name a Hub model (`--model`, `--tokenizer` are refused).
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
from registry.runtimes.vllm import RUNTIME

REQUIREMENTS = (f"vllm=={RUNTIME.version}",)

RECIPE = recipe_for(
    RUNTIME,
    base_image=LOCAL_BASE_IMAGE,
    build_files=build_files(
        RUNTIME,
        read_lock(ENTRYPOINT_LOCK_NAME),
        layers=CUDA_INSTALL_LAYERS,
        extra_env=("VLLM_NO_USAGE_STATS=1", "VLLM_DO_NOT_TRACK=1"),
        trim=("torch/test",),
    ),
    requirements=REQUIREMENTS,
    lock=read_lock(RUNTIME.name),
    install_layers=CUDA_INSTALL_LAYERS,
    transient_build=True,
    entrypoint=ENTRYPOINT,
)
