"""Serving runtimes as data: one module per runtime (`interface.py` says what each declares).

`get_runtime(name)` and `all_runtimes()` are what the planner, the image builder and the validation launcher
read. The names are those of `[runtimes.*]` in curation.toml, where the policy enables them, orders them and
gives them tasks and vendors. Upstream images carry the digests recorded in the checked-in pins file
(registry/runtimes/pins.py); `all_runtimes(pins)` applies another set (a policy's `images.pins_file`).
"""

from __future__ import annotations

from registry.runtimes import hf_serve, infinity, llama_cpp, nim, sglang, tei, tensorrt_llm, vllm
from registry.runtimes.interface import Runtime, RuntimeSpecError, TemplateKnobs
from registry.runtimes.pins import Pins, load_pins, with_pins

__all__ = ["Runtime", "RuntimeSpecError", "TemplateKnobs", "all_runtimes", "get_runtime"]

_DECLARED: dict[str, Runtime] = {
    module.RUNTIME.name: module.RUNTIME
    for module in (vllm, sglang, tensorrt_llm, nim, tei, llama_cpp, hf_serve, infinity)
}
_RUNTIMES: dict[str, Runtime] = {name: with_pins(runtime, load_pins()) for name, runtime in _DECLARED.items()}


def all_runtimes(pins: Pins | None = None) -> dict[str, Runtime]:
    """Every known runtime by name, with the checked-in upstream pins (or `pins`)."""
    if pins is None:
        return dict(_RUNTIMES)
    return {name: with_pins(runtime, pins) for name, runtime in _DECLARED.items()}


def get_runtime(name: str) -> Runtime:
    try:
        return _RUNTIMES[name]
    except KeyError as exc:
        known = ", ".join(sorted(_RUNTIMES))
        raise RuntimeSpecError(f"no runtime {name!r}; known runtimes: {known} (registry/runtimes/)") from exc
