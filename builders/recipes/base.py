"""The recipe record: what a runtime image is, how it starts, and how a template's launch arguments are spelt.

A recipe either references an upstream image (the GPU runtimes: vLLM, SGLang, TensorRT-LLM, NIM, TEI,
llama.cpp), or is built here from a local base image and wheels (hf-serve). Its digest covers everything that
changes the image, so an unchanged recipe is never rebuilt.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, TypedDict, Unpack

from pydantic import BaseModel, ConfigDict, Field

from builders.errors import RecipeError


class LaunchKnobs(TypedDict, total=False):
    """The template knobs `Recipe.launch_args` / `launch_env` take (all optional)."""

    context_length: int | None
    tensor_parallel: int
    quantization: str | None
    tool_call_parser: str | None
    reasoning_parser: str | None
    max_concurrency: int | None
    port: int | None
    host: str
    served_model_name: str | None


class LaunchFlags(BaseModel):
    """How a runtime spells each template knob on its command line; None when it has no such knob."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str | None = Field(default="--model", description="None: the model is the first positional arg")
    host: str | None = "--host"
    port: str | None = "--port"
    context_length: str | None = None
    tensor_parallel: str | None = None
    quantization: str | None = None
    tool_call_parser: str | None = None
    tool_call_enable: tuple[str, ...] = Field(default=(), description="flags that go with a tool-call parser")
    reasoning_parser: str | None = None
    max_concurrency: str | None = None
    served_model_name: str | None = None


class Recipe(BaseModel):
    """One runtime at one version. Read by the planner (ports, probes, accelerators, tasks, launch args)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    runtime: str
    version: str
    description: str = ""
    source: str = Field(default="", description="upstream project URL (OCI label org.opencontainers.image.source)")
    upstream_images: dict[str, str] = Field(
        default_factory=dict, description="accelerator vendor -> upstream image reference (not built here)"
    )
    base_image: str | None = Field(default=None, description="local base image a buildable recipe starts from")
    build_files: dict[str, str] = Field(
        default_factory=dict, description="build context files (name -> text), Dockerfile included"
    )
    requirements: tuple[str, ...] = Field(default=(), description="top-level requirements (the lock's input)")
    lock: str = Field(
        default="",
        description="the hash-pinned wheel set installed with --no-index --require-hashes (builders/recipes/locks/)",
    )
    entrypoint: tuple[str, ...] = ()
    port: int = 8000
    health_path: str = "/health"
    accelerators: tuple[str, ...] = Field(description="vendors: nvidia, amd, cpu")
    tasks: tuple[str, ...] = ("chat",)
    flags: LaunchFlags = Field(default_factory=LaunchFlags)
    fixed_args: tuple[str, ...] = Field(default=(), description="always passed after the model")
    env: dict[str, str] = Field(default_factory=dict)
    args_via_env: bool = Field(default=False, description="knobs are environment variables (NIM), not flags")

    @property
    def buildable(self) -> bool:
        return bool(self.build_files)

    def digest(self, extra: dict[str, Any] | None = None) -> str:
        """sha256 over the canonical JSON of the recipe (plus e.g. the wheel set): the build cache key."""
        payload = {"recipe": self.model_dump(mode="json"), "extra": extra or {}}
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def image_for(self, vendor: str) -> str:
        """The upstream image for an accelerator vendor (GPU runtimes)."""
        try:
            return self.upstream_images[vendor]
        except KeyError as exc:
            raise RecipeError(
                f"runtime {self.runtime} has no image for {vendor!r} accelerators; "
                f"it supports {', '.join(self.accelerators)}"
            ) from exc

    def launch_args(self, model: str, **knobs: Unpack[LaunchKnobs]) -> list[str]:
        """The command-line arguments that start this runtime for one deployment template.

        Knobs: context_length, tensor_parallel, quantization, tool_call_parser, reasoning_parser,
        max_concurrency, port, host, served_model_name. Context length and max concurrency are dropped for
        runtimes that cannot set them (the validator enforces them instead); tensor parallelism > 1,
        quantization and parsers raise `RecipeError` when the runtime cannot do them, because the template
        would then not describe what runs. Runtimes configured by environment (NIM) get only `fixed_args`.
        """
        pairs = self._pairs(model, **knobs)
        if self.args_via_env:
            return list(self.fixed_args)
        args: list[str] = []
        for flag, value in pairs:
            if flag == "":
                args.append(value)
            elif value == "":
                args.append(flag)
            else:
                args += [flag, value]
        return args + list(self.fixed_args)

    def launch_env(self, model: str, **knobs: Unpack[LaunchKnobs]) -> dict[str, str]:
        """Environment for runtimes configured by variables (NIM); the recipe's fixed `env` otherwise."""
        env = dict(self.env)
        if self.args_via_env:
            env.update({flag: value for flag, value in self._pairs(model, **knobs) if flag})
        return env

    def _pairs(
        self,
        model: str,
        *,
        context_length: int | None = None,
        tensor_parallel: int = 1,
        quantization: str | None = None,
        tool_call_parser: str | None = None,
        reasoning_parser: str | None = None,
        max_concurrency: int | None = None,
        port: int | None = None,
        host: str = "0.0.0.0",  # noqa: S104 - servers in containers listen on every interface
        served_model_name: str | None = None,
    ) -> list[tuple[str, str]]:
        flags = self.flags
        pairs: list[tuple[str, str]] = [(flags.model or "", model)]
        if flags.host:
            pairs.append((flags.host, host))
        if flags.port:
            pairs.append((flags.port, str(port or self.port)))
        if context_length is not None and flags.context_length:
            pairs.append((flags.context_length, str(context_length)))
        if tensor_parallel > 1:
            pairs.append((self._need(flags.tensor_parallel, "tensor parallelism"), str(tensor_parallel)))
        if quantization:
            pairs.append((self._need(flags.quantization, "a quantization flag"), quantization))
        if tool_call_parser:
            pairs += [(flag, "") for flag in flags.tool_call_enable]
            pairs.append((self._need(flags.tool_call_parser, "tool-call parsers"), tool_call_parser))
        if reasoning_parser:
            pairs.append((self._need(flags.reasoning_parser, "reasoning parsers"), reasoning_parser))
        if max_concurrency is not None and flags.max_concurrency:
            pairs.append((flags.max_concurrency, str(max_concurrency)))
        if served_model_name and flags.served_model_name:
            pairs.append((flags.served_model_name, served_model_name))
        return pairs

    def _need(self, flag: str | None, what: str) -> str:
        if flag is None:
            raise RecipeError(
                f"runtime {self.runtime} {self.version} has no {what}; pick another runtime for this template"
            )
        return flag


# ---------------------------------------------------------------------------------------------- offline images

LOCAL_BASE_IMAGE = "local/debian-python:bookworm"
OFFLINE_VENV = "/opt/venv"


def offline_venv_dockerfile(name: str, files: tuple[str, ...], entrypoint: str, extra_env: tuple[str, ...] = ()) -> str:
    """The Dockerfile of a runtime built here: wheels installed --no-index into a venv on the local base image.

    `files` are build-context files copied to /opt/<name>/ (the first is the entrypoint script, installed as
    `entrypoint`); `extra_env` adds `KEY=value` lines. Runs as an unprivileged user, offline, on port 8000.
    """
    site = f"{OFFLINE_VENV}/lib/python3.11/site-packages"
    copies = "\n".join(f"COPY {source} /opt/{name}/{target}" for source, target in _targets(files, entrypoint))
    env = "".join(f"    {line} \\\n" for line in extra_env)
    return f"""\
# {name}: built offline by builders/images.py (classic builder, network none).
FROM {LOCAL_BASE_IMAGE} AS install
COPY wheels/ /tmp/wheels/
COPY requirements.txt /tmp/requirements.txt
RUN python3 -m venv {OFFLINE_VENV} \\
 && {OFFLINE_VENV}/bin/pip install --no-index --find-links /tmp/wheels --no-cache-dir --no-compile \\
      --disable-pip-version-check --require-hashes --no-deps -r /tmp/requirements.txt \\
 && {OFFLINE_VENV}/bin/pip check \\
 && rm -rf {site}/torch/include {site}/torch/share/cmake {site}/torch/test \\
 && find {OFFLINE_VENV} -name '__pycache__' -prune -exec rm -rf {{}} +

FROM {LOCAL_BASE_IMAGE}
COPY --from=install {OFFLINE_VENV} {OFFLINE_VENV}
{copies}
RUN useradd --system --uid 10001 --home-dir /var/lib/hf --create-home serve
ENV PATH={OFFLINE_VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    HF_HOME=/var/lib/hf \\
    HF_HUB_OFFLINE=1 \\
    HF_HUB_DISABLE_TELEMETRY=1 \\
{env}    PYTHONDONTWRITEBYTECODE=1 \\
    PYTHONUNBUFFERED=1 \\
    PORT=8000
USER 10001
WORKDIR /var/lib/hf
EXPOSE 8000
ENTRYPOINT ["{OFFLINE_VENV}/bin/python", "/opt/{name}/entrypoint.py"]
"""


def _targets(files: tuple[str, ...], entrypoint: str) -> list[tuple[str, str]]:
    return [(source, "entrypoint.py" if source == entrypoint else source) for source in files]

