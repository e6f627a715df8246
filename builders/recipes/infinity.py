"""infinity's image: `infinity_emb` (michaelfeil/infinity) on CPU, an OpenAI-compatible embeddings server built
offline.

infinity-emb installed from locked wheels into a venv on the local Debian base image, like hf-serve. Its own
pins (transformers 4.x, numpy 1.x, huggingface_hub 0.x, typer 0.12 with click 8.1) live only inside the image.
"""

from __future__ import annotations

from builders.locks import read_lock
from builders.recipes.base import recipe_for
from builders.recipes.offline import CPU_TORCH_TRIM, ENTRYPOINT, ENTRYPOINT_LOCK_NAME, LOCAL_BASE_IMAGE, build_files
from registry.runtimes.infinity import RUNTIME

REQUIREMENTS = (f"infinity-emb[server,torch]=={RUNTIME.version}", "torch==2.13.0", "click==8.1.8")

RECIPE = recipe_for(
    RUNTIME,
    base_image=LOCAL_BASE_IMAGE,
    build_files=build_files(
        RUNTIME,
        read_lock(ENTRYPOINT_LOCK_NAME),
        extra_env=("INFINITY_ANONYMOUS_USAGE_STATS=0",),
        trim=CPU_TORCH_TRIM,
    ),
    requirements=REQUIREMENTS,
    lock=read_lock(RUNTIME.name),
    entrypoint=ENTRYPOINT,
)
