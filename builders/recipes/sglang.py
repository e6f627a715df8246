"""SGLang: `sglang.launch_server` from the upstream image."""

from __future__ import annotations

from builders.recipes.base import LaunchFlags, Recipe

RECIPE = Recipe(
    runtime="sglang",
    version="0.5.3",
    description="SGLang OpenAI-compatible server",
    source="https://github.com/sgl-project/sglang",
    upstream_images={
        "nvidia": "docker.io/lmsysorg/sglang:v0.5.3-cu126",
        "amd": "docker.io/lmsysorg/sglang:v0.5.3-rocm630",
    },
    entrypoint=("python3", "-m", "sglang.launch_server"),
    port=30000,
    health_path="/health",
    accelerators=("nvidia", "amd"),
    tasks=("chat", "completion", "embedding"),
    flags=LaunchFlags(
        model="--model-path",
        context_length="--context-length",
        tensor_parallel="--tp-size",
        quantization="--quantization",
        tool_call_parser="--tool-call-parser",
        reasoning_parser="--reasoning-parser",
        max_concurrency="--max-running-requests",
        served_model_name="--served-model-name",
    ),
)
