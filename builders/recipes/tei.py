"""Text Embeddings Inference: `text-embeddings-router`, OpenAI-compatible `/v1/embeddings`."""

from __future__ import annotations

from builders.recipes.base import LaunchFlags, Recipe

RECIPE = Recipe(
    runtime="tei",
    version="1.8.2",
    description="Hugging Face Text Embeddings Inference",
    source="https://github.com/huggingface/text-embeddings-inference",
    upstream_images={
        "nvidia": "ghcr.io/huggingface/text-embeddings-inference:hopper-1.8.2",
        "cpu": "ghcr.io/huggingface/text-embeddings-inference:cpu-1.8.2",
    },
    entrypoint=("text-embeddings-router",),
    port=8000,
    health_path="/health",
    accelerators=("nvidia", "cpu"),
    tasks=("embedding", "rerank"),
    flags=LaunchFlags(
        model="--model-id",
        max_concurrency="--max-concurrent-requests",
        served_model_name="--served-model-name",
    ),
)
