"""vLLM: the OpenAI-compatible server; the CUDA build from the package index is built here (builders/recipes/vllm.py).

vLLM also runs on AMD (ROCm builds), so the planner gives it MI300 templates; no ROCm image is built here, so
those cells say "image not available" until one is. Parsers per model family are vLLM's own names
(`--tool-call-parser`, `--reasoning-parser`).
"""

from __future__ import annotations

from registry.runtimes.interface import (
    GIB,
    RUNTIME_VENV,
    BuiltHere,
    ContextExtension,
    LaunchFlags,
    MemoryProfile,
    Runtime,
    ServerCommand,
)

RUNTIME = Runtime(
    name="vllm",
    version="0.33.0",
    description="vLLM OpenAI-compatible server (CUDA), model fetched from blob storage at start",
    source="https://github.com/vllm-project/vllm",
    image=BuiltHere(vendors=("nvidia",)),
    tasks=("chat",),
    vendors=("nvidia", "amd"),
    server=ServerCommand(
        argv=(f"{RUNTIME_VENV}/bin/vllm", "serve"),
        served_name_arg="--served-model-name",
        reserved_args=("--model", "--tokenizer", "--download-dir", "--hf-config-path"),
    ),
    port=8000,
    health_path="/health",
    flags=LaunchFlags(
        context_length="--max-model-len",
        tensor_parallel="--tensor-parallel-size",
        memory_utilization="--gpu-memory-utilization",
        context_extension=ContextExtension(flag="--rope-scaling"),
        quantization="--quantization",
        tool_call_parser="--tool-call-parser",
        tool_call_enable=("--enable-auto-tool-choice",),
        reasoning_parser="--reasoning-parser",
        max_concurrency="--max-num-seqs",
    ),
    memory=MemoryProfile(reserve_bytes=GIB // 2),
    parsers={
        "qwen3": ("hermes", "qwen3"),
        "qwen3_moe": ("hermes", "qwen3"),
        "qwen2": ("hermes", None),
        "qwen2_moe": ("hermes", None),
        "llama3": ("llama3_json", None),
        "llama4": ("llama4_pythonic", None),
        "mistral": ("mistral", None),
        "deepseek_v3": ("deepseek_v3", "deepseek_r1"),
        "granite": ("granite", None),
        "gpt_oss": ("openai", "openai_gptoss"),
    },
)
