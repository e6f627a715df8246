"""infinity: `infinity_emb` (michaelfeil/infinity) on CPU, an OpenAI-compatible embeddings server built offline.

`transformers serve` has no /v1/embeddings, and TEI publishes only upstream images (not buildable here), so the
CPU embeddings runtime is infinity-emb installed from wheels downloaded on the host (`--no-index`) into a venv
on the local Debian base image, like hf-serve. Its own pins (transformers 4.x, numpy 1.x, huggingface_hub 0.x,
typer 0.12 with click 8.1) live only inside the image. The entrypoint fetches and verifies the staged model with
hf-serve's fetch code and serves it under its repo id with the OpenAI routes under /v1.
"""

from __future__ import annotations

from pathlib import Path

from builders.locks import read_lock
from builders.recipes.base import LOCAL_BASE_IMAGE, OFFLINE_VENV, LaunchFlags, Recipe, offline_venv_dockerfile

BASE_IMAGE = LOCAL_BASE_IMAGE
REQUIREMENTS = ("infinity-emb[server,torch]==0.0.77", "torch==2.13.0", "click==8.1.8")
VENV = OFFLINE_VENV

DOCKERFILE = offline_venv_dockerfile(
    "infinity",
    ("hf_serve_entrypoint.py", "infinity_entrypoint.py"),
    "infinity_entrypoint.py",
    extra_env=("INFINITY_ANONYMOUS_USAGE_STATS=0", "DO_NOT_TRACK=1"),
)

_HERE = Path(__file__).resolve().parent

RECIPE = Recipe(
    runtime="infinity",
    version="0.0.77",
    description="infinity-emb (CPU, torch engine), OpenAI-compatible /v1/embeddings, model fetched from blob storage",
    source="https://github.com/michaelfeil/infinity",
    base_image=BASE_IMAGE,
    build_files={
        "Dockerfile": DOCKERFILE,
        "hf_serve_entrypoint.py": (_HERE / "hf_serve_entrypoint.py").read_text(encoding="utf-8"),
        "infinity_entrypoint.py": (_HERE / "infinity_entrypoint.py").read_text(encoding="utf-8"),
    },
    requirements=REQUIREMENTS,
    lock=read_lock("infinity"),
    entrypoint=(f"{VENV}/bin/python", "/opt/infinity/entrypoint.py"),
    port=8000,
    health_path="/health",
    accelerators=("cpu",),
    tasks=("embeddings",),
    flags=LaunchFlags(model="--model-id", host="--host", port="--port"),
    env={"HF_HUB_OFFLINE": "1"},
)
