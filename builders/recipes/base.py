"""The recipe record: what a runtime image is, how it starts, and how a template's launch arguments are spelt.

A recipe either references an upstream image (TensorRT-LLM, NIM, TEI), or is built here from the local base
image and locked wheels (hf-serve, infinity, llama.cpp, vLLM, SGLang; builders/recipes/offline.py). An image
built here starts through the shared entrypoint (builders/recipes/model_entrypoint.py), which fetches and
verifies the staged weights and then starts the runtime's own server as its `server` record says. The
recipe's digest covers everything that changes the image, so an unchanged recipe is never rebuilt.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal, TypedDict, Unpack

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


class ServerCommand(BaseModel):
    """How the shared entrypoint starts a runtime's own server on the verified local copy of the weights.

    Written into the image as /opt/curation/server.json. The model is never a Hub repo id: `model_path` says
    what the server is given (`snapshot`: the verified directory; `gguf`: the one .gguf file in it, or the one
    MODEL_FILE names; `hf-cache`: nothing, the server finds the repo id in the offline Hugging Face cache),
    and the repo id is only ever the served name.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    argv: tuple[str, ...] = Field(min_length=1, description="the server program and its leading arguments")
    model_path: Literal["snapshot", "gguf", "hf-cache"] = "snapshot"
    model_arg: str | None = Field(default=None, description="flag before the model path; None: positional")
    served_name_arg: str | None = Field(default=None, description="flag that sets the served model name")
    fixed_args: tuple[str, ...] = Field(default=(), description="always passed after the model")
    reserved_args: tuple[str, ...] = Field(
        default=(), description="flags a caller may not pass (they would name another model or a download)"
    )


class SourceBuild(BaseModel):
    """A locked package the index has no wheel for: compiled here once from its hash-pinned sdist.

    The runtime's lock pins the sdist by hash; `builders/local_wheels.py` builds the wheel with the build
    requirements locked in `locks/<runtime>-build.txt` and `env` (e.g. CMAKE_ARGS), and the image installs
    that wheel pinned by its own sha256 (recorded with its provenance beside it in the wheel cache).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    package: str
    env: dict[str, str] = Field(default_factory=dict)
    build_requirements: tuple[str, ...] = ()
    sdist_files: tuple[str, ...] = Field(
        default=(),
        description="files or folders of the sdist (relative to its top folder) the image also carries; the "
        "builder puts them, by their last path part, in the build-context folder `sdist-files/<package>/`",
    )


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
    source_builds: tuple[SourceBuild, ...] = Field(default=(), description="locked packages compiled here")
    build_lock: str = Field(default="", description="the hash-pinned build requirements of `source_builds`")
    server: ServerCommand | None = Field(default=None, description="what the shared entrypoint starts")
    install_layers: tuple[tuple[str, ...], ...] = Field(
        default=(),
        description="package-name patterns (fnmatch) installed in layers of their own, in order, before the "
        "rest: bounds the disk a multi-GB install needs while a layer is committed",
    )
    transient_build: bool = Field(
        default=False,
        description="multi-GB image: its wheels are fetched for the build only and deleted after the push, and "
        "the engine keeps no copy (the registry does)",
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

    @property
    def cpu_only(self) -> bool:
        """Images for CPUs only: their locks take the local CPU torch build (requirements/constraints.in)."""
        return set(self.accelerators) <= {"cpu"}

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
