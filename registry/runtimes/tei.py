"""Text Embeddings Inference: `text-embeddings-router`, OpenAI-compatible `/v1/embeddings`.

TEI listens on `--hostname` (not `--host`), refuses a `--max-batch-tokens` below the longest input (so a
template gives at least its context, and never less than TEI's default 16384), and truncates longer inputs with
`--auto-truncate`. Upstream images only (TEI publishes no wheel): not available until pinned by digest and
mirrored. The NVIDIA image is the Hopper build (H100); Ampere (A100) has its own tag upstream.
"""

from __future__ import annotations

from registry.runtimes.interface import GIB, LaunchFlags, MemoryProfile, Runtime, ServerCommand, Upstream, UpstreamImage

RUNTIME = Runtime(
    name="tei",
    version="1.8.2",
    description="Hugging Face Text Embeddings Inference",
    source="https://github.com/huggingface/text-embeddings-inference",
    image=Upstream(
        images={
            "nvidia": UpstreamImage(reference="ghcr.io/huggingface/text-embeddings-inference:hopper-1.8.2"),
            "cpu": UpstreamImage(reference="ghcr.io/huggingface/text-embeddings-inference:cpu-1.8.2"),
        }
    ),
    tasks=("embeddings",),
    vendors=("nvidia", "cpu"),
    server=ServerCommand(
        argv=("text-embeddings-router",), model_arg="--model-id", served_name_arg="--served-model-name"
    ),
    port=8000,
    health_path="/health",
    flags=LaunchFlags(
        host="--hostname",
        context_length="--max-batch-tokens",
        context_length_min=16384,
        max_concurrency="--max-concurrent-requests",
        template_fixed=("--auto-truncate",),
    ),
    memory=MemoryProfile(reserve_bytes=GIB, max_element_bytes=4, kv_dtype_bytes=None),
)
