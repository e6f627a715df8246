"""infinity: `infinity_emb` (michaelfeil/infinity) on CPU, an OpenAI-compatible embeddings server built here
(builders/recipes/infinity.py): `transformers serve` has no /v1/embeddings and TEI publishes only upstream
images. Served on the verified directory under the repo id, the OpenAI routes under /v1.
"""

from __future__ import annotations

from registry.runtimes.interface import GIB, BuiltHere, LaunchFlags, MemoryProfile, Runtime, ServerCommand

RUNTIME = Runtime(
    name="infinity",
    version="0.0.77",
    description="infinity-emb (CPU, torch engine), OpenAI-compatible /v1/embeddings, model fetched from blob storage",
    source="https://github.com/michaelfeil/infinity",
    image=BuiltHere(vendors=("cpu",)),
    tasks=("embeddings",),
    vendors=("cpu",),
    server=ServerCommand(
        argv=("infinity_emb", "v2"),
        model_arg="--model-id",
        served_name_arg="--served-model-name",
        fixed_args=("--url-prefix", "/v1", "--engine", "torch", "--device", "cpu", "--no-bettertransformer"),
    ),
    port=8000,
    health_path="/health",
    flags=LaunchFlags(),
    memory=MemoryProfile(reserve_bytes=GIB, max_element_bytes=4, kv_dtype_bytes=None),
)
