"""hf-serve: `transformers serve` on CPU, built here fully offline (the runtime validation uses here).

Built from the locally made Debian bookworm base image (debootstrap + docker import, python3 3.11) in two
stages: the first installs the wheels (downloaded on the host, `pip install --no-index --find-links`) into a
venv and trims it; the second copies only the venv and the entrypoint, so the wheels never reach a layer.
The entrypoint (`hf_serve_entrypoint.py`, standard library only) fetches the staged model from blob storage
(or a mounted directory), verifies every sha256, lays it out as a Hugging Face cache and execs
`transformers serve --device cpu` with HF_HUB_OFFLINE=1, so the model is served under its repo id.
"""

from __future__ import annotations

from pathlib import Path

from builders.locks import read_lock
from builders.recipes.base import LOCAL_BASE_IMAGE, OFFLINE_VENV, LaunchFlags, Recipe, offline_venv_dockerfile

BASE_IMAGE = LOCAL_BASE_IMAGE
# The one place the transformers version is written: the image is built with it, and `make lock` pins the
# project's venv (where the tests run `transformers serve`) to the same release.
VERSION = "5.23.0"
# Speech recognition (`/v1/audio/transcriptions`) decodes uploads with soundfile (libsndfile is inside its wheel)
# and resamples with soxr, and reads the multipart form with python-multipart; vision-language chat decodes
# images with Pillow. No torchaudio / torchvision: they would pull another torch build.
REQUIREMENTS = (
    f"transformers[serving]=={VERSION}",
    "torch==2.13.0",
    "fastapi==0.150.0",
    "soundfile==0.14.0",
    "soxr==1.1.0",
    "python-multipart==0.0.34",
    "pillow==13.0.0",
)
VENV = OFFLINE_VENV

DOCKERFILE = offline_venv_dockerfile("hf-serve", ("hf_serve_entrypoint.py",), "hf_serve_entrypoint.py")

_ENTRYPOINT_SOURCE = (Path(__file__).resolve().parent / "hf_serve_entrypoint.py").read_text(encoding="utf-8")

RECIPE = Recipe(
    runtime="hf-serve",
    version=VERSION,
    description="transformers serve (CPU), OpenAI-compatible, model fetched from blob storage at start",
    source="https://github.com/huggingface/transformers",
    base_image=BASE_IMAGE,
    build_files={"Dockerfile": DOCKERFILE, "hf_serve_entrypoint.py": _ENTRYPOINT_SOURCE},
    requirements=REQUIREMENTS,
    lock=read_lock("hf-serve"),
    entrypoint=(f"{VENV}/bin/python", "/opt/hf-serve/entrypoint.py"),
    port=8000,
    health_path="/health",
    accelerators=("cpu",),
    tasks=("chat", "completion", "automatic-speech-recognition", "image-text-to-text"),
    flags=LaunchFlags(model="--model-id", host="--host", port="--port"),
    env={"HF_HUB_OFFLINE": "1"},
)
