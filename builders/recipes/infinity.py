"""infinity: `infinity_emb` (michaelfeil/infinity) on CPU, an OpenAI-compatible embeddings server built offline.

`transformers serve` has no /v1/embeddings, and TEI publishes only upstream images (not buildable here), so the
CPU embeddings runtime is infinity-emb installed from locked wheels into a venv on the local Debian base image,
like hf-serve. Its own pins (transformers 4.x, numpy 1.x, huggingface_hub 0.x, typer 0.12 with click 8.1) live
only inside the image. The shared entrypoint fetches and verifies the staged model and runs `infinity_emb v2` on
the verified directory, served under the repo id with the OpenAI routes under /v1.
"""

from __future__ import annotations

from builders.locks import read_lock
from builders.recipes.base import LaunchFlags, Recipe, ServerCommand
from builders.recipes.model_entrypoint import MODEL_ID_FLAG
from builders.recipes.offline import (
    CPU_TORCH_TRIM,
    ENTRYPOINT,
    ENTRYPOINT_LOCK_NAME,
    LOCAL_BASE_IMAGE,
    build_files,
)

VERSION = "0.0.77"
REQUIREMENTS = (f"infinity-emb[server,torch]=={VERSION}", "torch==2.13.0", "click==8.1.8")
PORT = 8000

SERVER = ServerCommand(
    argv=("infinity_emb", "v2"),
    model_arg="--model-id",
    served_name_arg="--served-model-name",
    fixed_args=("--url-prefix", "/v1", "--engine", "torch", "--device", "cpu", "--no-bettertransformer"),
)

RECIPE = Recipe(
    runtime="infinity",
    version=VERSION,
    description="infinity-emb (CPU, torch engine), OpenAI-compatible /v1/embeddings, model fetched from blob storage",
    source="https://github.com/michaelfeil/infinity",
    base_image=LOCAL_BASE_IMAGE,
    build_files=build_files(
        "infinity",
        SERVER,
        read_lock(ENTRYPOINT_LOCK_NAME),
        port=PORT,
        extra_env=("INFINITY_ANONYMOUS_USAGE_STATS=0",),
        trim=CPU_TORCH_TRIM,
    ),
    requirements=REQUIREMENTS,
    lock=read_lock("infinity"),
    server=SERVER,
    entrypoint=ENTRYPOINT,
    port=PORT,
    health_path="/health",
    accelerators=("cpu",),
    tasks=("embeddings",),
    flags=LaunchFlags(model=MODEL_ID_FLAG, host="--host", port="--port"),
    env={"HF_HUB_OFFLINE": "1"},
)
