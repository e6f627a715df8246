"""Derive GGUF files from a model's staged safetensors inside the llama.cpp image, with no network.

The staged prefix (files, manifest, content-addressed signature) is mounted read-only; the image's shared
entrypoint verifies it (model-signing signature by the pipeline's key, every file's sha256) before it runs
llama.cpp's own converter (`--exec`) to an f16 GGUF, the reference; llama.cpp's quantizer then makes each asked
type from it (builders/recipes/llama_cpp_quantize.py). Where a tensor's rows do not fit a type's block size,
llama.cpp quantizes that tensor to another type and logs it: those fallbacks are counted from its log.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import docker
from docker.errors import DockerException
from requests import RequestException

from builders.errors import BuildersError
from builders.recipes.llama_cpp import CONVERTER, PYTHON, QUANTIZER
from registry.blobs import derived_gguf_name
from registry.schema import ModelRef

REFERENCE = "f16"
# llama.cpp's quantizer (src/llama-quant.cpp, tensor_type_fallback): "warning: <tensor> - ncols 576 not divisible
# by 256 (required for type q4_K) -> falling back to q5_0"; releases before it said "using fallback quantization".
_FALLBACK = re.compile(r"(?:-> falling back to|using fallback quantization)\s+(\w+)")
_MOUNT_SOURCE = "/staged"
_MOUNT_OUT = "/out"
LOG_TAIL_CHARS = 3000


class DeriveError(BuildersError):
    """A GGUF could not be derived (no Docker Engine, a container that did not finish, no file written)."""


class DeriveRefusedError(DeriveError):
    """llama.cpp's converter or quantizer (or the entrypoint's verification) exited non-zero: the same inputs give
    the same answer (e.g. an architecture or tokenizer the converter does not know); the log tail says why."""


@dataclass(frozen=True)
class DeriveJob:
    """What to derive: the staged prefix downloaded to `source_dir`, written to `out_dir`, with `image`."""

    image: str
    docker_host: str
    source_dir: Path
    out_dir: Path
    ref: ModelRef
    public_key_pem: str
    quantizations: tuple[str, ...]
    timeout_s: float = 1800.0


@dataclass(frozen=True)
class DerivedFile:
    quantization: str
    path: Path
    fallbacks: dict[str, int]


def fallbacks_in(log: str) -> dict[str, int]:
    """type -> how many tensors llama.cpp's quantizer quantized to it as a fallback, from its log."""
    return dict(Counter(_FALLBACK.findall(log)))


def _run(client: docker.DockerClient, job: DeriveJob, what: str, command: list[str], **options: object) -> str:
    """Run one container of the image to its exit with no network; its log, or DeriveError with its tail."""
    volumes = {
        str(job.source_dir): {"bind": _MOUNT_SOURCE, "mode": "ro"},
        str(job.out_dir): {"bind": _MOUNT_OUT, "mode": "rw"},
    }
    container = client.containers.run(
        job.image, command=command, volumes=volumes, network_mode="none", detach=True, **options
    )
    try:
        status = container.wait(timeout=job.timeout_s)
        log = bytes(container.logs(stdout=True, stderr=True)).decode(errors="replace")
    except RequestException as exc:  # the wait timed out: derive.timeout_s
        raise DeriveError(f"{what} of {job.ref} did not end within [derive] timeout_s ({job.timeout_s:.0f}s)") from exc
    finally:
        container.remove(force=True)
    code = int(status.get("StatusCode", -1))
    if code != 0:
        raise DeriveRefusedError(f"{what} of {job.ref} exited with {code}; its log ends:\n{log[-LOG_TAIL_CHARS:]}")
    return log


def derive_gguf(job: DeriveJob) -> tuple[DerivedFile, ...]:
    """The f16 reference, then every asked quantization, as files in `job.out_dir` (reference first)."""
    job.out_dir.mkdir(parents=True, exist_ok=True)
    job.out_dir.chmod(0o777)  # the image runs as its own uid
    reference = derived_gguf_name(job.ref, REFERENCE)
    env = {
        "MODEL_DIR": _MOUNT_SOURCE,
        "MODEL_ID": job.ref.repo_id,
        "MODEL_REVISION": job.ref.revision,
        "MODEL_SIGNING_PUBLIC_KEY": job.public_key_pem,
    }
    convert = ["--exec", PYTHON, CONVERTER, "{model_dir}", "--outtype", REFERENCE, "--outfile"]
    try:
        client = docker.DockerClient(base_url=job.docker_host, timeout=int(job.timeout_s) + 60)
    except DockerException as exc:
        raise DeriveError(f"cannot reach the Docker Engine at {job.docker_host}: {exc}; run `curate dev up`") from exc
    try:
        _run(client, job, "the conversion", [*convert, f"{_MOUNT_OUT}/{reference}"], environment=env)
        made = [DerivedFile(REFERENCE, job.out_dir / reference, {})]
        for quantization in job.quantizations:
            name = derived_gguf_name(job.ref, quantization)
            quantize = [QUANTIZER, f"{_MOUNT_OUT}/{reference}", f"{_MOUNT_OUT}/{name}", quantization]
            log = _run(client, job, f"the {quantization} quantization", quantize, entrypoint=[PYTHON])
            made.append(DerivedFile(quantization, job.out_dir / name, fallbacks_in(log)))
    except DockerException as exc:
        raise DeriveError(f"the Docker Engine failed deriving GGUF files of {job.ref}: {exc}") from exc
    finally:
        client.close()
    for derived in made:
        if not derived.path.is_file():
            raise DeriveError(f"{derived.path.name} was not written by llama.cpp; see its log")
    return tuple(made)
