"""The runtime interface: what one serving runtime declares about itself, once, as data.

Every runtime (vLLM, SGLang, TensorRT-LLM, NIM, TEI, llama.cpp, hf-serve, infinity) is one module of this package
holding one `Runtime` record. The planner (validators/planner.py), the image builder (builders/recipes/) and the
validation launcher (flows/validate.py) read only these records, so no runtime fact is written twice:

- how its image is obtained: `BuiltHere` (from public packages, builders/recipes/<runtime>.py) or `Upstream`
  (an upstream image per vendor, pinned by digest in registry/runtimes/pins.json by `curate images pin`, then
  mirrored and wrapped with the shared entrypoint by builders/wrap.py);
- the tasks it serves and the accelerator vendors it supports;
- `server`: how the shared entrypoint starts the runtime's own server on the verified local copy of the weights
  (the repo id is only ever the served name; no runtime is given a Hub repo id);
- `flags`: how it spells each template knob; `template_args(knobs)` renders a deployment template's argv from
  them (context length, tensor parallel size, memory utilization, context extension, quantization, tool-call and
  reasoning parsers, max concurrent sequences) and `launch(template_args, port=, host=)` the container's;
- its port and health probe, and the planner's memory profile (`MemoryProfile`) and parsers per model family.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from registry.errors import RegistryError

GIB = 1024**3
_Flag = TypeVar("_Flag", str, "ContextExtension")
RUNTIME_VENV = "/opt/venv"
"""Where an image built here installs its runtime (builders/recipes/offline.py builds it there)."""


class RuntimeSpecError(RegistryError):
    """A runtime is unknown, or cannot express a template knob (e.g. tensor parallelism on a CPU runtime)."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ServerCommand(_Frozen):
    """How the shared entrypoint starts a runtime's own server on the verified local copy of the weights.

    Written into an image built here as /opt/curation/server.json. The model is never a Hub repo id:
    `model_path` says what the server is given (`snapshot`: the verified directory; `gguf`: the one .gguf file in
    it, or the one MODEL_FILE names; `hf-cache`: nothing, the server finds the repo id in the offline Hugging Face
    cache), and the repo id is only ever the served name.
    """

    argv: tuple[str, ...] = Field(min_length=1, description="the server program and its leading arguments")
    model_path: Literal["snapshot", "gguf", "hf-cache"] = "snapshot"
    model_arg: str | None = Field(default=None, description="flag before the model path; None: positional")
    served_name_arg: str | None = Field(default=None, description="flag that sets the served model name")
    fixed_args: tuple[str, ...] = Field(default=(), description="always passed after the model")
    reserved_args: tuple[str, ...] = Field(
        default=(), description="flags a caller may not pass (they would name another model or a download)"
    )
    via_env: bool = Field(
        default=False, description="model_arg and served_name_arg are environment variables (NIM), not flags"
    )


class BuiltHere(_Frozen):
    """The image is built here from public packages (builders/recipes/<runtime>.py), for these vendors."""

    kind: Literal["built-here"] = "built-here"
    vendors: tuple[str, ...] = Field(min_length=1, description="accelerator vendors the image built here serves")


class UpstreamImage(_Frozen):
    """One upstream image: its reference (a version tag, never `latest`) and the digest it is pinned by."""

    reference: str = Field(description="registry/repository:tag, declared once; pinned by `curate images pin`")
    digest: str | None = Field(
        default=None, description="sha256:... recorded by a pin step on a machine that reaches the registry"
    )

    @field_validator("reference")
    @classmethod
    def _version_tag(cls, value: str) -> str:
        last = value.rsplit("/", 1)[-1]
        if "/" not in value or "@" in value or ":" not in last or last.endswith(":latest"):
            raise ValueError(f"upstream reference {value!r} must be registry/repository:<version tag>, never latest")
        return value

    @property
    def pinned(self) -> str | None:
        """`repo@sha256:...`, or None while no digest is recorded."""
        if self.digest is None:
            return None
        return f"{self.reference.rsplit(':', 1)[0]}@{self.digest}"


class Upstream(_Frozen):
    """Upstream images per vendor, to be mirrored into the configured registry and wrapped with the entrypoint."""

    kind: Literal["upstream"] = "upstream"
    images: dict[str, UpstreamImage] = Field(min_length=1, description="accelerator vendor -> upstream image")


class ContextExtension(_Frozen):
    """How the runtime is told to extend the context with YaRN: `flag` takes the rope-scaling JSON, wrapped in
    `{key: ...}` when `key` is set (SGLang's model override)."""

    flag: str
    key: str | None = None


class LaunchFlags(_Frozen):
    """How a runtime spells each template knob (a flag, or a variable name when `Runtime.env_configured`);
    None when it has no such knob."""

    host: str | None = "--host"
    port: str | None = "--port"
    context_length: str | None = None
    context_length_min: int = Field(default=0, description="the value given is at least this (TEI's batch tokens)")
    tensor_parallel: str | None = None
    memory_utilization: str | None = None
    context_extension: ContextExtension | None = None
    quantization: str | None = None
    tool_call_parser: str | None = None
    tool_call_enable: tuple[str, ...] = Field(default=(), description="flags that go with a tool-call parser")
    reasoning_parser: str | None = None
    max_concurrency: str | None = None
    template_fixed: tuple[str, ...] = Field(default=(), description="passed with every template's arguments")


class MemoryProfile(_Frozen):
    """What the planner assumes about the runtime's memory (validators/planner.py has the formula)."""

    reserve_bytes: int = Field(description="fixed per-accelerator overhead inside the budget")
    max_element_bytes: float = Field(default=2, description="weights load at most this wide (GPU: 16-bit)")
    kv_dtype_bytes: float | None = Field(default=2, description="KV cache element; None: the checkpoint's dtype")
    context_cap: int | None = Field(default=None, description="the longest context it is planned with")
    max_concurrency_cap: int = 256
    embeddings_concurrency: int = 32
    serves_quantized: bool = Field(default=True, description="loads quantized checkpoints")


@dataclass(frozen=True)
class TemplateKnobs:
    """The knobs of one deployment template, as the planner decides them."""

    context_length: int | None = None
    tensor_parallel: int = 1
    memory_utilization: float | None = None
    rope_scaling: Mapping[str, Any] | None = None
    quantization: str | None = None
    tool_call_parser: str | None = None
    reasoning_parser: str | None = None
    max_concurrency: int | None = None


@dataclass(frozen=True)
class Launch:
    """What a container of the runtime is started with (after the image's entrypoint)."""

    argv: tuple[str, ...]
    env: dict[str, str]


class Runtime(_Frozen):
    """One runtime at one version: everything the planner, the image builder and the launcher know about it."""

    name: str
    version: str
    description: str = ""
    source: str = Field(default="", description="upstream project URL")
    image: BuiltHere | Upstream = Field(discriminator="kind")
    tasks: tuple[str, ...] = Field(min_length=1, description="tasks it serves (validators/tasks.py names)")
    vendors: tuple[str, ...] = Field(min_length=1, description="accelerator vendors the runtime supports")
    server: ServerCommand
    port: int = Field(default=8000, gt=0, lt=65536)
    health_path: str = "/health"
    flags: LaunchFlags = Field(default_factory=LaunchFlags)
    env_configured: bool = Field(default=False, description="knobs are environment variables (NIM), not flags")
    env: dict[str, str] = Field(default_factory=dict, description="always set in the container")
    memory: MemoryProfile
    parsers: dict[str, tuple[str | None, str | None]] = Field(
        default_factory=dict, description="parser family (validators/planner.py) -> (tool-call, reasoning) parser"
    )
    checkpoint_quantization: bool = Field(
        default=True, description="reads a checkpoint's quantization from its config (not passed as a knob)"
    )

    @property
    def built_here(self) -> bool:
        return isinstance(self.image, BuiltHere)

    def image_unavailable(self, vendor: str) -> str | None:
        """Why this runtime has no image for `vendor` from its declaration alone (None: it may have one: built
        here, or an upstream image pinned by digest, once built or mirrored and wrapped)."""
        if vendor not in self.vendors:
            return f"{self.name} does not run on {vendor} accelerators (it supports {', '.join(self.vendors)})"
        if isinstance(self.image, BuiltHere):
            if vendor not in self.image.vendors:
                return f"the {self.name} image built here is for {', '.join(self.image.vendors)} only, not {vendor}"
            return None
        upstream = self.image.images.get(vendor)
        if upstream is None:
            return f"no upstream {self.name} image is declared for {vendor}"
        if upstream.digest is None:
            host = upstream.reference.split("/", 1)[0]
            return (
                f"no pinned digest for {upstream.reference}: run `curate images pin --runtime {self.name}` on a "
                f"machine that reaches {host}"
            )
        return None  # pinned: it has an image once `curate images build` has mirrored and wrapped it

    def template_args(self, knobs: TemplateKnobs) -> tuple[str, ...]:
        """The argv a deployment template carries (`DeploymentTemplate.runtime_args`), spelt this runtime's way;
        for a runtime configured by environment, `NAME=value` assignments. Context length and max concurrency
        are dropped where the runtime cannot set them (the validator enforces them); tensor parallelism > 1,
        context extension, quantization and parsers raise `RuntimeSpecError` where it cannot do them."""
        return tuple(self._render(self._pairs(knobs)))

    def launch(self, template_args: tuple[str, ...], *, port: int | None = None, host: str = "0.0.0.0") -> Launch:  # noqa: S104
        """The container's arguments and environment: host and port, then the template's arguments."""
        given = ((self.flags.host, host), (self.flags.port, str(port or self.port)))
        known = [(flag, value) for flag, value in given if flag]
        if self.env_configured:
            assigned = dict(item.split("=", 1) for item in template_args)
            return Launch((), {**self.env, **dict(known), **assigned})
        return Launch((*self._render(known), *template_args), dict(self.env))

    def _render(self, pairs: list[tuple[str, str]]) -> list[str]:
        if self.env_configured:
            return [f"{flag}={value}" for flag, value in pairs]
        args: list[str] = []
        for flag, value in pairs:
            args += [flag] if value == "" else [flag, value]
        return args

    def _pairs(self, knobs: TemplateKnobs) -> list[tuple[str, str]]:
        flags = self.flags
        pairs: list[tuple[str, str]] = []
        if knobs.context_length is not None and flags.context_length:
            pairs.append((flags.context_length, str(max(knobs.context_length, flags.context_length_min))))
        if flags.tensor_parallel or knobs.tensor_parallel > 1:
            pairs.append((self._need(flags.tensor_parallel, "tensor parallelism"), str(knobs.tensor_parallel)))
        if knobs.memory_utilization is not None and flags.memory_utilization:
            pairs.append((flags.memory_utilization, f"{knobs.memory_utilization:.2f}"))
        if knobs.rope_scaling is not None:
            extension = self._need(flags.context_extension, "context extension (YaRN)")
            value: Mapping[str, Any] = {extension.key: knobs.rope_scaling} if extension.key else knobs.rope_scaling
            pairs.append((extension.flag, json.dumps(value, separators=(",", ":"))))
        if knobs.quantization:
            pairs.append((self._need(flags.quantization, "a quantization flag"), knobs.quantization))
        if knobs.tool_call_parser:
            pairs += [(flag, "") for flag in flags.tool_call_enable]
            pairs.append((self._need(flags.tool_call_parser, "tool-call parsers"), knobs.tool_call_parser))
        if knobs.reasoning_parser:
            pairs.append((self._need(flags.reasoning_parser, "reasoning parsers"), knobs.reasoning_parser))
        if knobs.max_concurrency is not None and flags.max_concurrency:
            pairs.append((flags.max_concurrency, str(knobs.max_concurrency)))
        pairs += [(flag, "") for flag in flags.template_fixed]
        return pairs

    def _need(self, flag: _Flag | None, what: str) -> _Flag:
        if flag is None:
            raise RuntimeSpecError(
                f"runtime {self.name} {self.version} has no {what}; pick another runtime for this template"
            )
        return flag
