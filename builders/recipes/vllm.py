"""vLLM: the OpenAI-compatible server of the upstream image (NVIDIA CUDA and AMD ROCm builds)."""

from __future__ import annotations

from builders.recipes.base import LaunchFlags, Recipe

RECIPE = Recipe(
    runtime="vllm",
    version="0.11.0",
    description="vLLM OpenAI-compatible server",
    source="https://github.com/vllm-project/vllm",
    upstream_images={"nvidia": "docker.io/vllm/vllm-openai:v0.11.0", "amd": "docker.io/rocm/vllm:latest"},
    entrypoint=("python3", "-m", "vllm.entrypoints.openai.api_server"),
    port=8000,
    health_path="/health",
    accelerators=("nvidia", "amd"),
    tasks=("chat", "completion", "embedding"),
    flags=LaunchFlags(
        model="--model",
        context_length="--max-model-len",
        tensor_parallel="--tensor-parallel-size",
        quantization="--quantization",
        tool_call_parser="--tool-call-parser",
        tool_call_enable=("--enable-auto-tool-choice",),
        reasoning_parser="--reasoning-parser",
        max_concurrency="--max-num-seqs",
        served_model_name="--served-model-name",
    ),
)
