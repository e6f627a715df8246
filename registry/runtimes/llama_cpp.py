"""llama.cpp: llama-cpp-python's OpenAI-compatible server on CPU over one GGUF file, built here
(builders/recipes/llama_cpp.py).

The server has no /health route: /v1/models answers once the model is loaded. `--interrupt_requests False`:
otherwise a new request cancels the stream in flight. The context is `--n_ctx`.
"""

from __future__ import annotations

from registry.runtimes.interface import (
    GIB,
    RUNTIME_VENV,
    BuiltHere,
    LaunchFlags,
    MemoryProfile,
    Runtime,
    ServerCommand,
)

RUNTIME = Runtime(
    name="llama-cpp",
    version="0.3.36",
    description="llama-cpp-python server (CPU, GGUF), with llama.cpp's converter and quantizer",
    source="https://github.com/abetlen/llama-cpp-python",
    image=BuiltHere(vendors=("cpu",)),
    tasks=("chat",),
    vendors=("cpu",),
    server=ServerCommand(
        argv=(f"{RUNTIME_VENV}/bin/python", "-m", "llama_cpp.server"),
        model_path="gguf",
        model_arg="--model",
        served_name_arg="--model_alias",
        fixed_args=("--interrupt_requests", "False"),
        reserved_args=("--config_file", "--hf_model_repo_id", "--hf_pretrained_model_name_or_path"),
    ),
    port=8000,
    health_path="/v1/models",
    flags=LaunchFlags(context_length="--n_ctx"),
    # It serves GGUF files converted from unquantized safetensors: a checkpoint quantized otherwise (AWQ, GPTQ,
    # FP8) cannot be converted.
    memory=MemoryProfile(reserve_bytes=GIB // 2, serves_quantized=False),
)
