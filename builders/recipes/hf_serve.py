"""hf-serve: `transformers serve` on CPU, built here fully offline (the runtime validation uses here).

Built on the local Debian base image from locked wheels (builders/recipes/offline.py): the shared entrypoint
fetches the staged model from blob storage, verifies its signature and every sha256, lays it out as a Hugging
Face cache and execs `transformers serve --device cpu` with HF_HUB_OFFLINE=1. Given a path, `transformers
serve` lists no model, so it is given none: it finds the repo id in the offline cache and serves it by that id.
"""

from __future__ import annotations

from builders.locks import read_lock
from builders.recipes.base import LaunchFlags, Recipe, ServerCommand
from builders.recipes.model_entrypoint import MODEL_ID_FLAG
from builders.recipes.offline import (
    CPU_TORCH_TRIM,
    ENTRYPOINT,
    ENTRYPOINT_LOCK_NAME,
    LOCAL_BASE_IMAGE,
    build_files,
)

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
PORT = 8000

SERVER = ServerCommand(
    argv=("transformers", "serve", "--device", "cpu"),
    model_path="hf-cache",
    reserved_args=("--force-model",),
)

RECIPE = Recipe(
    runtime="hf-serve",
    version=VERSION,
    description="transformers serve (CPU), OpenAI-compatible, model fetched from blob storage at start",
    source="https://github.com/huggingface/transformers",
    base_image=LOCAL_BASE_IMAGE,
    build_files=build_files("hf-serve", SERVER, read_lock(ENTRYPOINT_LOCK_NAME), port=PORT, trim=CPU_TORCH_TRIM),
    requirements=REQUIREMENTS,
    lock=read_lock("hf-serve"),
    server=SERVER,
    entrypoint=ENTRYPOINT,
    port=PORT,
    health_path="/health",
    accelerators=("cpu",),
    tasks=("chat", "completion", "automatic-speech-recognition", "image-text-to-text"),
    flags=LaunchFlags(model=MODEL_ID_FLAG, host="--host", port="--port"),
    env={"HF_HUB_OFFLINE": "1"},
)
