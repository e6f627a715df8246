"""TensorRT-LLM: `trtllm-serve` from NVIDIA's release image (quantization comes with the checkpoint)."""

from __future__ import annotations

from builders.recipes.base import LaunchFlags, Recipe

RECIPE = Recipe(
    runtime="tensorrt-llm",
    version="1.0.0",
    description="TensorRT-LLM trtllm-serve (PyTorch backend)",
    source="https://github.com/NVIDIA/TensorRT-LLM",
    upstream_images={"nvidia": "nvcr.io/nvidia/tensorrt-llm/release:1.0.0"},
    entrypoint=("trtllm-serve", "serve"),
    port=8000,
    health_path="/health",
    accelerators=("nvidia",),
    tasks=("chat", "completion"),
    flags=LaunchFlags(
        model=None,
        context_length="--max_seq_len",
        tensor_parallel="--tp_size",
        reasoning_parser="--reasoning_parser",
        max_concurrency="--max_batch_size",
    ),
    fixed_args=("--backend", "pytorch"),
)
