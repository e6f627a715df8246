"""NVIDIA NIM (multi-LLM container): configured through NIM_* variables, launched by its own entrypoint."""

from __future__ import annotations

from builders.recipes.base import LaunchFlags, Recipe

RECIPE = Recipe(
    runtime="nim",
    version="1.13.1",
    description="NVIDIA NIM for LLMs (multi-model container)",
    source="https://docs.nvidia.com/nim/large-language-models/",
    upstream_images={"nvidia": "nvcr.io/nim/nvidia/llm-nim:1.13.1"},
    entrypoint=("/opt/nim/start_server.sh",),
    port=8000,
    health_path="/v1/health/ready",
    accelerators=("nvidia",),
    tasks=("chat", "completion"),
    # NIM reads its settings from the environment (NIM_MODEL_NAME, NIM_MAX_MODEL_LEN,
    # NIM_TENSOR_PARALLEL_SIZE, NIM_SERVED_MODEL_NAME); `Recipe.launch_env` spells the knobs.
    flags=LaunchFlags(
        model="NIM_MODEL_NAME",
        host=None,
        port="NIM_SERVER_PORT",
        context_length="NIM_MAX_MODEL_LEN",
        tensor_parallel="NIM_TENSOR_PARALLEL_SIZE",
        max_concurrency="NIM_MAX_NUM_SEQS",
        served_model_name="NIM_SERVED_MODEL_NAME",
    ),
    args_via_env=True,
)
