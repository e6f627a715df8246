"""NVIDIA NIM for LLMs (multi-LLM container): configured by NIM_* variables, started by its own script.

Every knob is an environment variable (`env_configured`): the model path (`NIM_MODEL_NAME`, the verified local
copy), the served name, port, context length, tensor parallel size, max sequences. An upstream image, not
available until pinned by digest and mirrored.
"""

from __future__ import annotations

from registry.runtimes.interface import GIB, LaunchFlags, MemoryProfile, Runtime, ServerCommand, Upstream, UpstreamImage

RUNTIME = Runtime(
    name="nim",
    version="1.13.1",
    description="NVIDIA NIM for LLMs (multi-model container)",
    source="https://docs.nvidia.com/nim/large-language-models/",
    image=Upstream(images={"nvidia": UpstreamImage(reference="nvcr.io/nim/nvidia/llm-nim:1.13.1")}),
    tasks=("chat",),
    vendors=("nvidia",),
    server=ServerCommand(
        argv=("/opt/nim/start_server.sh",),
        model_arg="NIM_MODEL_NAME",
        served_name_arg="NIM_SERVED_MODEL_NAME",
        via_env=True,
    ),
    port=8000,
    health_path="/v1/health/ready",
    flags=LaunchFlags(
        host=None,
        port="NIM_SERVER_PORT",
        context_length="NIM_MAX_MODEL_LEN",
        tensor_parallel="NIM_TENSOR_PARALLEL_SIZE",
        max_concurrency="NIM_MAX_NUM_SEQS",
    ),
    env_configured=True,
    memory=MemoryProfile(reserve_bytes=GIB),
)
