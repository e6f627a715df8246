"""TensorRT-LLM: `trtllm-serve` (PyTorch backend) from NVIDIA's release image; quantization comes with the
checkpoint. An upstream image: pinned by digest by a pin step on a machine that reaches nvcr.io, mirrored and
wrapped with the shared entrypoint; until then not available."""

from __future__ import annotations

from registry.runtimes.interface import GIB, LaunchFlags, MemoryProfile, Runtime, ServerCommand, Upstream, UpstreamImage

RUNTIME = Runtime(
    name="tensorrt-llm",
    version="1.0.0",
    description="TensorRT-LLM trtllm-serve (PyTorch backend)",
    source="https://github.com/NVIDIA/TensorRT-LLM",
    image=Upstream(images={"nvidia": UpstreamImage(reference="nvcr.io/nvidia/tensorrt-llm/release:1.0.0")}),
    tasks=("chat",),
    vendors=("nvidia",),
    server=ServerCommand(argv=("trtllm-serve", "serve"), fixed_args=("--backend", "pytorch")),
    port=8000,
    health_path="/health",
    flags=LaunchFlags(
        context_length="--max_seq_len",
        tensor_parallel="--tp_size",
        reasoning_parser="--reasoning_parser",
        max_concurrency="--max_batch_size",
    ),
    memory=MemoryProfile(reserve_bytes=GIB),
)
