"""SGLang: `sglang.launch_server`, the CUDA build from the package index, built here on the local base image.

Like vLLM: SGLang pins its own CUDA torch, so its lock does not take the local CPU torch; the image is several
GB, built on demand (`curate images build --runtime sglang`) or by the weekly deployment where `[images]
weekly_runtimes` lists it, with its wheels fetched for the build only (`transient_build`). The shared entrypoint
fetches and verifies the staged model and runs `python -m sglang.launch_server --model-path <verified dir>
--served-model-name <repo id>`.
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

VERSION = "0.5.23"
PORT = 30000
REQUIREMENTS = (f"sglang=={VERSION}",)
SERVER = ServerCommand(
    argv=(f"{RUNTIME_VENV}/bin/python", "-m", "sglang.launch_server"),
    model_arg="--model-path",
    served_name_arg="--served-model-name",
    reserved_args=("--model", "--tokenizer-path", "--download-dir"),
)

RECIPE = Recipe(
    runtime="sglang",
    version=VERSION,
    description="SGLang OpenAI-compatible server (CUDA), model fetched from blob storage at start",
    source="https://github.com/sgl-project/sglang",
    base_image=LOCAL_BASE_IMAGE,
    build_files=build_files(
        "sglang",
        SERVER,
        read_lock(ENTRYPOINT_LOCK_NAME),
        port=PORT,
        layers=CUDA_INSTALL_LAYERS,
        extra_env=("SGLANG_DISABLE_USAGE_STATS=1",),
        trim=("torch/test",),
    ),
    requirements=REQUIREMENTS,
    lock=read_lock("sglang"),
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
        context_length="--context-length",
        tensor_parallel="--tp-size",
        quantization="--quantization",
        tool_call_parser="--tool-call-parser",
        reasoning_parser="--reasoning-parser",
        max_concurrency="--max-running-requests",
        served_model_name=None,
    ),
    env={"HF_HUB_OFFLINE": "1"},
)
