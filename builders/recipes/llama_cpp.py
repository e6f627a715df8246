"""llama.cpp: `llama-server` over a GGUF file (quantization is the GGUF's own)."""

from __future__ import annotations

from builders.recipes.base import LaunchFlags, Recipe

RECIPE = Recipe(
    runtime="llama-cpp",
    version="b6795",
    description="llama.cpp llama-server",
    source="https://github.com/ggml-org/llama.cpp",
    upstream_images={
        "nvidia": "ghcr.io/ggml-org/llama.cpp:server-cuda-b6795",
        "cpu": "ghcr.io/ggml-org/llama.cpp:server-b6795",
    },
    entrypoint=("/app/llama-server",),
    port=8080,
    health_path="/health",
    accelerators=("nvidia", "cpu"),
    tasks=("chat", "completion", "embedding"),
    flags=LaunchFlags(
        model="--model",
        context_length="--ctx-size",
        tool_call_parser=None,
        max_concurrency="--parallel",
        served_model_name="--alias",
    ),
    fixed_args=("--jinja",),
)
