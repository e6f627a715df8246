"""Mirror-and-wrap: an upstream runtime image (TEI, TensorRT-LLM, NIM), pulled by its pinned digest only, with the
shared entrypoint added as a layer of its own.

The wrapper is an ordinary `Recipe` (so builders/images.py builds, caches by digest, and pushes it, and flows/build.py
scans, SBOMs, signs and records it like every image built here). Its Dockerfile has two stages:

1. `entrypoint`, from the local Debian base image: a self-contained Python for the entrypoint under
   /opt/curation/python (the interpreter, its standard library, the shared libraries it and the locked wheels
   link against, and the base's dynamic loader), and the entrypoint's locked venv at /opt/curation/entrypoint
   (model-signing, installed `--no-index --require-hashes` from wheels served on loopback, as for every image);
2. `FROM <upstream>@sha256:...` (never a tag: the recipe refuses anything else), copying /opt/curation and the
   server spec in. The entrypoint runs through the copied loader with `--library-path`, so it needs nothing from
   the upstream image (TEI ships no Python; TensorRT-LLM's and NIM's Pythons are left untouched) and leaks no
   LD_LIBRARY_PATH or PYTHONPATH into the server it execs: the runtime's own command, as its registry/runtimes
   module declares it, on the upstream image's own PATH, user and libraries.
"""

from __future__ import annotations

from builders.errors import NotBuildableError
from builders.locks import read_lock
from builders.recipes.base import Recipe
from builders.recipes.offline import (
    CURATION_DIR,
    ENTRYPOINT_LOCK_NAME,
    ENTRYPOINT_REQUIREMENTS_FILE,
    ENTRYPOINT_SOURCE,
    ENTRYPOINT_VENV,
    LOCAL_BASE_IMAGE,
)
from registry.runtimes.interface import Runtime

PYTHON_ROOT = f"{CURATION_DIR}/python"
LOADER = f"{PYTHON_ROOT}/ld.so"
LIBRARY_PATH = f"{PYTHON_ROOT}/lib"
WRAPPED_ENTRYPOINT = (
    LOADER,
    "--library-path",
    LIBRARY_PATH,
    f"{ENTRYPOINT_VENV}/bin/python",
    f"{CURATION_DIR}/entrypoint.py",
)
_SITE = f"{ENTRYPOINT_VENV}/lib/python3.11/site-packages"
_PIP = 'pip install --no-index --find-links "$WHEELS" --no-cache-dir --no-compile --disable-pip-version-check'


def wrapper_dockerfile(runtime: Runtime, upstream: str) -> str:
    """The two-stage Dockerfile that puts the entrypoint layer on `upstream` (`repository@sha256:...`)."""
    return f"""\
# {runtime.name} {runtime.version}: the upstream image pinned by digest, wrapped with the shared entrypoint
# (builders/wrap.py). The entrypoint brings its own Python (checked with it here, through its own loader); the
# upstream image is not changed otherwise.
FROM {LOCAL_BASE_IMAGE} AS entrypoint
ARG WHEELS
COPY {ENTRYPOINT_REQUIREMENTS_FILE} /tmp/{ENTRYPOINT_REQUIREMENTS_FILE}
RUN mkdir -p {PYTHON_ROOT}/usr/bin {PYTHON_ROOT}/usr/lib /out/var/lib/hf \\
 && cp /usr/bin/python3.11 {PYTHON_ROOT}/usr/bin/ \\
 && cp -a /usr/lib/python3.11 {PYTHON_ROOT}/usr/lib/ \\
 && cp -aL /usr/lib/x86_64-linux-gnu {LIBRARY_PATH} \\
 && cp -L /lib64/ld-linux-x86-64.so.2 {LOADER} \\
 && {PYTHON_ROOT}/usr/bin/python3.11 -m venv --without-pip {ENTRYPOINT_VENV} \\
 && python3 -m venv /tmp/pip \\
 && /tmp/pip/bin/{_PIP} \\
      --require-hashes --no-deps --target {_SITE} -r /tmp/{ENTRYPOINT_REQUIREMENTS_FILE} \\
 && {" ".join(WRAPPED_ENTRYPOINT[:4])} -c "import model_signing, ssl" \\
 && find {CURATION_DIR} -name '__pycache__' -prune -exec rm -rf {{}} + \\
 && chmod 1777 /out/var/lib/hf

FROM {upstream}
COPY --from=entrypoint {CURATION_DIR} {CURATION_DIR}
COPY --from=entrypoint /out/var/lib/hf /var/lib/hf
COPY entrypoint.py server.json {CURATION_DIR}/
ENV HF_HOME=/var/lib/hf \\
    HF_HUB_OFFLINE=1 \\
    HF_HUB_DISABLE_TELEMETRY=1 \\
    DO_NOT_TRACK=1
EXPOSE {runtime.port}
ENTRYPOINT {_json_list(WRAPPED_ENTRYPOINT)}
CMD []
"""


def _json_list(items: tuple[str, ...]) -> str:
    return "[" + ", ".join(f'"{item}"' for item in items) + "]"


def wrapper_recipe(runtime: Runtime, vendor: str, upstream: str) -> Recipe:
    """The recipe of `runtime`'s wrapper for `vendor` over `upstream`, which must be pinned by digest."""
    if "@sha256:" not in upstream:
        raise NotBuildableError(
            f"{runtime.name}: refusing to wrap {upstream}: upstream images are pulled by a pinned digest only; "
            f"run `curate images pin --runtime {runtime.name}`"
        )
    return Recipe(
        runtime=runtime.name,
        version=runtime.version,
        description=f"{runtime.description} ({vendor}), wrapped with the shared entrypoint",
        source=runtime.source,
        base_image=LOCAL_BASE_IMAGE,
        upstream=upstream,
        build_files={
            "Dockerfile": wrapper_dockerfile(runtime, upstream),
            "entrypoint.py": ENTRYPOINT_SOURCE,
            "server.json": runtime.server.model_dump_json(indent=2) + "\n",
            ENTRYPOINT_REQUIREMENTS_FILE: read_lock(ENTRYPOINT_LOCK_NAME),
        },
        server=runtime.server,
        entrypoint=WRAPPED_ENTRYPOINT,
        accelerators=(vendor,),
    )
