"""infinity: `infinity_emb` (michaelfeil/infinity) on CPU, an OpenAI-compatible embeddings server built offline.

`transformers serve` has no /v1/embeddings, and TEI publishes only upstream images (not buildable here), so the
CPU embeddings runtime is infinity-emb installed from wheels downloaded on the host (`--no-index`) into a venv
on the local Debian base image, like hf-serve. Its own pins (transformers 4.x, numpy 1.x, huggingface_hub 0.x,
typer 0.12 with click 8.1) live only inside the image. The entrypoint fetches and verifies the staged model with
hf-serve's fetch code and serves it under its repo id with the OpenAI routes under /v1.
"""

from __future__ import annotations

from pathlib import Path

from builders.recipes.base import LaunchFlags, Recipe

BASE_IMAGE = "local/debian-python:bookworm"
REQUIREMENTS = ("infinity-emb[server,torch]==0.0.77", "torch==2.13.0", "click==8.1.8")
VENV = "/opt/venv"
SITE = f"{VENV}/lib/python3.11/site-packages"

DOCKERFILE = f"""\
# infinity: built offline by builders/images.py (classic builder, network none).
FROM {BASE_IMAGE} AS install
COPY wheels/ /tmp/wheels/
COPY requirements.txt /tmp/requirements.txt
RUN python3 -m venv {VENV} \\
 && {VENV}/bin/pip install --no-index --find-links /tmp/wheels --no-cache-dir --no-compile \\
      --disable-pip-version-check -r /tmp/requirements.txt \\
 && rm -rf {SITE}/torch/include {SITE}/torch/share/cmake {SITE}/torch/test \\
 && find {VENV} -name '__pycache__' -prune -exec rm -rf {{}} +

FROM {BASE_IMAGE}
COPY --from=install {VENV} {VENV}
COPY hf_serve_entrypoint.py /opt/infinity/hf_serve_entrypoint.py
COPY infinity_entrypoint.py /opt/infinity/entrypoint.py
RUN useradd --system --uid 10001 --home-dir /var/lib/hf --create-home serve
ENV PATH={VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    HF_HOME=/var/lib/hf \\
    HF_HUB_OFFLINE=1 \\
    HF_HUB_DISABLE_TELEMETRY=1 \\
    INFINITY_ANONYMOUS_USAGE_STATS=0 \\
    DO_NOT_TRACK=1 \\
    PYTHONDONTWRITEBYTECODE=1 \\
    PYTHONUNBUFFERED=1 \\
    PORT=8000
USER 10001
WORKDIR /var/lib/hf
EXPOSE 8000
ENTRYPOINT ["{VENV}/bin/python", "/opt/infinity/entrypoint.py"]
"""

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
    entrypoint=(f"{VENV}/bin/python", "/opt/infinity/entrypoint.py"),
    port=8000,
    health_path="/health",
    accelerators=("cpu",),
    tasks=("embeddings",),
    flags=LaunchFlags(model="--model-id", host="--host", port="--port"),
    env={"HF_HUB_OFFLINE": "1"},
)
