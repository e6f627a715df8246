"""hf-serve: `transformers serve` on CPU, built here fully offline (builders/recipes/hf_serve.py); the runtime
the tests and the demo validate with.

Given a path, `transformers serve` lists no model, so it is given none: it finds the repo id in the offline
Hugging Face cache the entrypoint lays out, and serves it under that id. It takes no template knob but host and
port: its context and concurrency are enforced by the validator.
"""

from __future__ import annotations

from registry.runtimes.interface import GIB, BuiltHere, LaunchFlags, MemoryProfile, Runtime, ServerCommand

RUNTIME = Runtime(
    name="hf-serve",
    # The one place the transformers version is written: the image is built with it, and `make lock` pins the
    # project's venv (where the tests run `transformers serve`) to the same release.
    version="5.23.0",
    description="transformers serve (CPU), OpenAI-compatible, model fetched from blob storage at start",
    source="https://github.com/huggingface/transformers",
    image=BuiltHere(vendors=("cpu",)),
    tasks=("chat", "automatic-speech-recognition", "image-text-to-text"),
    vendors=("cpu",),
    server=ServerCommand(
        argv=("transformers", "serve", "--device", "cpu"), model_path="hf-cache", reserved_args=("--force-model",)
    ),
    port=8000,
    health_path="/health",
    flags=LaunchFlags(),
    memory=MemoryProfile(
        reserve_bytes=GIB,
        max_element_bytes=8,
        kv_dtype_bytes=None,
        context_cap=8192,
        max_concurrency_cap=8,
        serves_quantized=False,
    ),
)
