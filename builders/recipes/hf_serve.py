"""hf-serve's image: `transformers serve` on CPU, built here fully offline (the runtime validation uses here).

Built on the local Debian base image from locked wheels (builders/recipes/offline.py): the shared entrypoint
fetches the staged model from blob storage, verifies its signature and every sha256, lays it out as a Hugging
Face cache and execs the server registry/runtimes/hf_serve.py declares, with HF_HUB_OFFLINE=1.
"""

from __future__ import annotations

from builders.locks import read_lock
from builders.recipes.base import recipe_for
from builders.recipes.offline import CPU_TORCH_TRIM, ENTRYPOINT, ENTRYPOINT_LOCK_NAME, LOCAL_BASE_IMAGE, build_files
from registry.runtimes.hf_serve import RUNTIME

# Speech recognition (`/v1/audio/transcriptions`) decodes uploads with soundfile (libsndfile is inside its wheel)
# and resamples with soxr, and reads the multipart form with python-multipart; vision-language chat decodes
# images with Pillow. No torchaudio / torchvision: they would pull another torch build.
REQUIREMENTS = (
    f"transformers[serving]=={RUNTIME.version}",
    "torch==2.13.0",
    "fastapi==0.150.0",
    "soundfile==0.14.0",
    "soxr==1.1.0",
    "python-multipart==0.0.34",
    "pillow==13.0.0",
)

RECIPE = recipe_for(
    RUNTIME,
    base_image=LOCAL_BASE_IMAGE,
    build_files=build_files(RUNTIME, read_lock(ENTRYPOINT_LOCK_NAME), trim=CPU_TORCH_TRIM),
    requirements=REQUIREMENTS,
    lock=read_lock(RUNTIME.name),
    entrypoint=ENTRYPOINT,
)
