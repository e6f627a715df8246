"""Runtime images built here: the Dockerfile, the shared entrypoint layer and the build files of every recipe.

Every image starts from the local Debian base image (debootstrap + `docker import`, python3 3.11) and has:

1. the entrypoint layer: a venv at /opt/curation/entrypoint with model-signing and its dependencies, installed
   from `locks/entrypoint.txt`; the same layer in every image (it is installed first);
2. the runtime layer: a venv at /opt/venv installed from `locks/<runtime>.txt`, trimmed in the same step;
3. the entrypoint script and the server spec: /opt/curation/entrypoint.py (`model_entrypoint.py`) and
   /opt/curation/server.json (the recipe's `ServerCommand`).

Wheels never enter the build context nor any layer: the builder serves the locked wheels from the host's wheel
cache on a loopback port for the duration of the build (`builders/wheel_server.py`), passed as the build
argument WHEELS, and pip installs them with `--no-index --require-hashes --no-deps`, so nothing but those exact
files can be installed. The build runs with the host network only so that the loopback server is reachable.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

from registry.runtimes.interface import RUNTIME_VENV, Runtime

LOCAL_BASE_IMAGE = "local/debian-python:bookworm"
CURATION_DIR = "/opt/curation"
ENTRYPOINT_VENV = f"{CURATION_DIR}/entrypoint"
ENTRYPOINT = (f"{ENTRYPOINT_VENV}/bin/python", f"{CURATION_DIR}/entrypoint.py")
# The entrypoint layer's top-level requirements (`make lock` writes locks/entrypoint.txt from them).
# model-signing is the release the pipeline signs with (pyproject.toml); pyopenssl is needed but undeclared.
ENTRYPOINT_LOCK_NAME = "entrypoint"
ENTRYPOINT_REQUIREMENTS = ("model-signing==1.1.1", "pyopenssl==26.4.0")
ENTRYPOINT_SOURCE = (Path(__file__).resolve().parent / "model_entrypoint.py").read_text(encoding="utf-8")
# Build-context file names (builders/images.py writes the locks under these names).
RUNTIME_REQUIREMENTS_FILE = "requirements.txt"
ENTRYPOINT_REQUIREMENTS_FILE = "entrypoint-requirements.txt"
# Where the builder puts a source build's `sdist_files` in the build context (one folder per package).
SDIST_FILES_DIR = "sdist-files"
# The CUDA images' install layers (Recipe.install_layers), each one to two GB installed: committing a layer needs
# about twice its size on disk for a moment, so several small ones need far less than one large one.
CUDA_INSTALL_LAYERS = (
    ("nvidia-cudnn*", "nvidia-cusparselt*"),
    ("nvidia-cublas*", "nvidia-nccl*", "nvidia-nvshmem*"),
    ("nvidia-*", "cuda-*"),
    ("torch",),
    ("triton", "*-triton", "torch*"),
    ("vllm", "sglang", "flashinfer*", "sgl-*", "sglang-*"),
)
# What CPU images drop from torch: headers, cmake files and tests are never used by a server.
CPU_TORCH_TRIM = ("torch/include", "torch/share/cmake", "torch/test")

_PIP = 'pip install --no-index --find-links "$WHEELS" --no-cache-dir --no-compile --disable-pip-version-check'


def layer_requirements_file(index: int) -> str:
    """The build-context name of the lock part installed by runtime layer `index` (0 = the rest, last)."""
    return RUNTIME_REQUIREMENTS_FILE if index == 0 else f"requirements-{index}.txt"


def split_lock(lock_text: str, layers: tuple[tuple[str, ...], ...]) -> dict[str, str]:
    """The lock cut into one requirements file per install layer (`layer_requirements_file` names).

    A package goes to the first layer with a pattern matching its name, else to the last (the rest).
    """
    parts: dict[str, list[str]] = {layer_requirements_file(i): [] for i in range(len(layers) + 1)}
    for block in re.split(r"\n(?=\S)", lock_text):
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", block)
        if match is None:
            continue
        name = match.group(1).lower()
        index = next((i + 1 for i, pats in enumerate(layers) if any(fnmatch.fnmatch(name, p) for p in pats)), 0)
        parts[layer_requirements_file(index)].append(block.strip() + "\n")
    return {name: "".join(blocks) for name, blocks in parts.items()}


def _install_step(venv: str, requirements: str, *, create: bool, check: bool, trim: tuple[str, ...]) -> str:
    site = f"{venv}/lib/python3.11/site-packages"
    lines = [f"COPY {requirements} /tmp/{requirements}"]
    run = [f"python3 -m venv {venv}"] if create else []
    run.append(f"{venv}/bin/{_PIP} \\\n      --require-hashes --no-deps -r /tmp/{requirements}")
    if check:
        run.append(f"{venv}/bin/pip check")
    run += [f"rm -rf {site}/{path}" for path in trim]
    run += [f"find {venv} -name '__pycache__' -prune -exec rm -rf {{}} +", f"rm /tmp/{requirements}"]
    lines.append("RUN " + " \\\n && ".join(run))
    return "\n".join(lines)


def runtime_dockerfile(
    name: str,
    *,
    port: int,
    layers: int = 0,
    extra_files: tuple[tuple[str, str], ...] = (),
    extra_env: tuple[str, ...] = (),
    trim: tuple[str, ...] = (),
) -> str:
    """The Dockerfile of a runtime image built here.

    `layers` is the number of runtime install layers before the last one (`Recipe.install_layers`);
    `extra_files` are (build-context name, absolute path in the image) pairs copied after the venvs;
    `extra_env` adds `KEY=value` lines; `trim` lists paths under the runtime venv's site-packages removed in
    each install step. Runs as the unprivileged uid 10001 with HF_HOME=/var/lib/hf.
    """
    runtime_steps = [
        _install_step(
            RUNTIME_VENV, layer_requirements_file(i), create=i == (1 if layers else 0), check=i == 0, trim=trim
        )
        for i in [*range(1, layers + 1), 0]
    ]
    copies = "".join(f"COPY {source} {target}\n" for source, target in extra_files)
    env = "".join(f"    {line} \\\n" for line in extra_env)
    return f"""\
# {name}: built by builders/images.py from locked wheels served on loopback (pip --no-index --require-hashes).
FROM {LOCAL_BASE_IMAGE}
ARG WHEELS
{_install_step(ENTRYPOINT_VENV, ENTRYPOINT_REQUIREMENTS_FILE, create=True, check=True, trim=())}
{chr(10).join(runtime_steps)}
COPY entrypoint.py server.json {CURATION_DIR}/
{copies}RUN useradd --system --uid 10001 --home-dir /var/lib/hf --create-home serve
ENV PATH={RUNTIME_VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    HF_HOME=/var/lib/hf \\
    HF_HUB_OFFLINE=1 \\
    HF_HUB_DISABLE_TELEMETRY=1 \\
    DO_NOT_TRACK=1 \\
{env}    PYTHONDONTWRITEBYTECODE=1 \\
    PYTHONUNBUFFERED=1
USER 10001
WORKDIR /var/lib/hf
EXPOSE {port}
ENTRYPOINT ["{ENTRYPOINT[0]}", "{ENTRYPOINT[1]}"]
"""


def build_files(
    runtime: Runtime,
    entrypoint_lock: str,
    *,
    layers: tuple[tuple[str, ...], ...] = (),
    extra_files: dict[str, tuple[str, str]] | None = None,
    sdist_dirs: tuple[tuple[str, str], ...] = (),
    extra_env: tuple[str, ...] = (),
    trim: tuple[str, ...] = (),
) -> dict[str, str]:
    """Every build-context file of a runtime image (the runtime lock and sdist files are added by the builder).

    `extra_files`: build-context name -> (file text, absolute path in the image); `sdist_dirs`: (package,
    folder in the image) for the `sdist_files` of a source build.
    """
    extra = extra_files or {}
    name, server = runtime.name, runtime.server
    dockerfile = runtime_dockerfile(
        name,
        port=runtime.port,
        layers=len(layers),
        extra_files=(
            *((source, target) for source, (_, target) in sorted(extra.items())),
            *((f"{SDIST_FILES_DIR}/{package}/", target) for package, target in sdist_dirs),
        ),
        extra_env=extra_env,
        trim=trim,
    )
    return {
        "Dockerfile": dockerfile,
        "entrypoint.py": ENTRYPOINT_SOURCE,
        "server.json": server.model_dump_json(indent=2) + "\n",
        ENTRYPOINT_REQUIREMENTS_FILE: entrypoint_lock,
        **{source: text for source, (text, _) in extra.items()},
    }
