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

from builders.recipes.base import LaunchFlags, Recipe

BASE_IMAGE = "local/debian-python:bookworm"
REQUIREMENTS = ("transformers[serving]==5.23.0", "torch==2.13.0", "fastapi==0.150.0")
VENV = "/opt/venv"
SITE = f"{VENV}/lib/python3.11/site-packages"

DOCKERFILE = f"""\
# hf-serve: built offline by builders/images.py (classic builder, network none).
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
COPY hf_serve_entrypoint.py /opt/hf-serve/entrypoint.py
RUN useradd --system --uid 10001 --home-dir /var/lib/hf --create-home serve
ENV PATH={VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    HF_HOME=/var/lib/hf \\
    HF_HUB_OFFLINE=1 \\
    HF_HUB_DISABLE_TELEMETRY=1 \\
    PYTHONDONTWRITEBYTECODE=1 \\
    PYTHONUNBUFFERED=1 \\
    PORT=8000
USER 10001
WORKDIR /var/lib/hf
EXPOSE 8000
ENTRYPOINT ["{VENV}/bin/python", "/opt/hf-serve/entrypoint.py"]
"""

_ENTRYPOINT_SOURCE = (Path(__file__).resolve().parent / "hf_serve_entrypoint.py").read_text(encoding="utf-8")

RECIPE = Recipe(
    runtime="hf-serve",
    version="5.23.0",
    description="transformers serve (CPU), OpenAI-compatible, model fetched from blob storage at start",
    source="https://github.com/huggingface/transformers",
    base_image=BASE_IMAGE,
    build_files={"Dockerfile": DOCKERFILE, "hf_serve_entrypoint.py": _ENTRYPOINT_SOURCE},
    requirements=REQUIREMENTS,
    entrypoint=(f"{VENV}/bin/python", "/opt/hf-serve/entrypoint.py"),
    port=8000,
    health_path="/health",
    accelerators=("cpu",),
    tasks=("chat", "completion"),
    flags=LaunchFlags(model="--model-id", host="--host", port="--port"),
    env={"HF_HUB_OFFLINE": "1"},
)
