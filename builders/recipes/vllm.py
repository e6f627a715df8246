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
from builders.recipes.base import LaunchFlags, Recipe, ServerCommand
from builders.recipes.model_entrypoint import MODEL_ID_FLAG
from builders.recipes.offline import (
    CUDA_INSTALL_LAYERS,
    ENTRYPOINT,
    ENTRYPOINT_LOCK_NAME,
    LOCAL_BASE_IMAGE,
    RUNTIME_VENV,
    build_files,
)

VERSION = "0.33.0"
PORT = 8000
REQUIREMENTS = (f"vllm=={VERSION}",)
SERVER = ServerCommand(
    argv=(f"{RUNTIME_VENV}/bin/vllm", "serve"),
    served_name_arg="--served-model-name",
    reserved_args=("--model", "--tokenizer", "--download-dir", "--hf-config-path"),
)

RECIPE = Recipe(
    runtime="vllm",
    version=VERSION,
    description="vLLM OpenAI-compatible server (CUDA), model fetched from blob storage at start",
    source="https://github.com/vllm-project/vllm",
    base_image=LOCAL_BASE_IMAGE,
    build_files=build_files(
        "vllm",
        SERVER,
        read_lock(ENTRYPOINT_LOCK_NAME),
        port=PORT,
        layers=CUDA_INSTALL_LAYERS,
        extra_env=("VLLM_NO_USAGE_STATS=1", "VLLM_DO_NOT_TRACK=1"),
        trim=("torch/test",),
    ),
    requirements=REQUIREMENTS,
    lock=read_lock("vllm"),
    server=SERVER,
    install_layers=CUDA_INSTALL_LAYERS,
    transient_build=True,
    entrypoint=ENTRYPOINT,
    port=PORT,
    health_path="/health",
    accelerators=("nvidia",),
    tasks=("chat", "completion", "embedding"),
    flags=LaunchFlags(
        model=MODEL_ID_FLAG,
        context_length="--max-model-len",
        tensor_parallel="--tensor-parallel-size",
        quantization="--quantization",
        tool_call_parser="--tool-call-parser",
        tool_call_enable=("--enable-auto-tool-choice",),
        reasoning_parser="--reasoning-parser",
        max_concurrency="--max-num-seqs",
        served_model_name=None,
    ),
    env={"HF_HUB_OFFLINE": "1"},
)
