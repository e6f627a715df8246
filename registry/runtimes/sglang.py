"""SGLang: `sglang.launch_server`; the CUDA build from the package index is built here (builders/recipes/sglang.py).

Like vLLM it also runs on AMD (ROCm builds); no ROCm image is built here. YaRN is given as a model override
(`--json-model-override-args {"rope_scaling": ...}`).
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
    name="sglang",
    version="0.5.23",
    description="SGLang OpenAI-compatible server (CUDA), model fetched from blob storage at start",
    source="https://github.com/sgl-project/sglang",
    image=BuiltHere(vendors=("nvidia",)),
    tasks=("chat",),
    vendors=("nvidia", "amd"),
    server=ServerCommand(
        argv=(f"{RUNTIME_VENV}/bin/python", "-m", "sglang.launch_server"),
        model_arg="--model-path",
        served_name_arg="--served-model-name",
        reserved_args=("--model", "--tokenizer-path", "--download-dir"),
    ),
    port=30000,
    health_path="/health",
    flags=LaunchFlags(
        context_length="--context-length",
        tensor_parallel="--tp-size",
        memory_utilization="--mem-fraction-static",
        context_extension=ContextExtension(flag="--json-model-override-args", key="rope_scaling"),
        quantization="--quantization",
        tool_call_parser="--tool-call-parser",
        reasoning_parser="--reasoning-parser",
        max_concurrency="--max-running-requests",
    ),
    memory=MemoryProfile(reserve_bytes=GIB),
    parsers={
        "qwen3": ("qwen25", "qwen3"),
        "qwen3_moe": ("qwen25", "qwen3"),
        "qwen2": ("qwen25", None),
        "llama3": ("llama3", None),
        "mistral": ("mistral", None),
        "deepseek_v3": ("deepseekv3", "deepseek-r1"),
    },
)
