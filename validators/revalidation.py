"""What re-validates a cell: the one rule, and the inputs it compares (no I/O).

A cell's verdict depends on exactly the inputs in `CellInputs` (registry/schema.py), and this module is the one
place that lists them and says how each is taken:

- the model **revision** and the **weights** (the digest of the staged weights' signature);
- the runtime **image digest** (and the runtime version the image carries);
- the cell's **own policy**: the checks required of its task, the benchmark's bounds and error rate, the SLOs,
  and the template's launch settings (`cell_policy`);
- the conformance **suite's version** and **each check's version**;
- the runtime's **accepted deviations** at that runtime version (`validation.deviations`, version-keyed).

`REVALIDATION` judges a `CellHistory` (the inputs now, the newest recorded result of the same template):
accepted = the recorded result stands (the cell is not run; its row says "unchanged since <run>"); rejected =
run the cell, the reasons name every input that changed. A result that is not a verdict about its inputs is
never kept: `not-validated` (no worker, no capacity) and a `failed` cell whose suite never ran (an image,
weights or infrastructure error) run again. Other issues add inputs here (a field of `CellInputs`, taken in
`cell_inputs`, compared in `changed_inputs`), never elsewhere.

The other direction: `stale_bindings` lists, for a published entry, the runtimes whose current image is not
the one the entry is bound to; the weekly run re-validates those entries on the new digest (an entry moves to
the new image only when its cells pass there: `IMAGE_MOVE`, decisions/publication.py).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from registry.rules import CheckAll, Rule
from registry.schema import (
    CatalogEntry,
    CellInputs,
    DeploymentTemplate,
    RuntimeImage,
    StagedWeights,
    ValidationResult,
    ValidationVerdict,
)
from registry.settings import Settings
from validators.cells import (
    TRANSCRIPTION_BENCHMARK,
    accepted_deviations,
    benchmark_kind,
    required_checks,
    slo_gate,
    suite_task,
)
from validators.conformance import SUITE_VERSION, checks_for
from validators.errors import ConformanceError
from validators.planner import is_derived_gguf

_TEMPLATE_LAUNCH = {
    "runtime",
    "accelerator_family",
    "count",
    "context_length",
    "quantization",
    "runtime_args",
    "tool_call_parser",
    "reasoning_parser",
    "max_concurrency",
    "task",
}


def cell_policy(settings: Settings, template: DeploymentTemplate) -> dict[str, Any]:
    """The part of the policy that decides this cell's verdict: its launch, required checks, error rate, a derived
    quantization's minimum output agreement, and for a benchmarked task the benchmark's bounds and the SLO gate it
    is judged by."""
    v = settings.validation
    policy: dict[str, Any] = {
        "template": template.model_dump(mode="json", include=_TEMPLATE_LAUNCH),
        "required": list(required_checks(v, template)),
        "max_benchmark_error_rate": v.max_benchmark_error_rate,
    }
    if is_derived_gguf(template):  # its verdict also needs its outputs to agree with the f16 reference's
        policy["min_token_agreement"] = settings.derive.min_token_agreement
    kind = benchmark_kind(template)
    if kind is None:
        return policy  # no benchmark for this task
    bounds = {"bench_concurrencies", "bench_max_requests", "bench_max_duration_s"}
    if kind == TRANSCRIPTION_BENCHMARK:
        bounds |= {"bench_audio_seconds"}
    else:
        bounds |= {"bench_input_tokens", "bench_output_tokens"}
    policy["benchmark"] = v.model_dump(mode="json", include=bounds)
    gate = slo_gate(settings.slo, template)
    policy["slo"] = gate.model_dump(mode="json") if gate is not None else None
    return policy


def _check_versions(template: DeploymentTemplate) -> dict[str, int]:
    try:
        return {spec.name: spec.version for spec in checks_for(suite_task(template.task))}
    except ConformanceError:
        return {}


def cell_inputs(
    settings: Settings,
    template: DeploymentTemplate,
    weights: StagedWeights,
    image: RuntimeImage | None,
) -> CellInputs:
    """The inputs of one cell now: the staged weights, the image its runtime would run on, the policy."""
    version = image.version if image is not None else ""
    deviations = settings.validation.deviations.get(template.runtime, {})
    canonical = json.dumps(cell_policy(settings, template), sort_keys=True, separators=(",", ":"))
    return CellInputs(
        revision=weights.ref.revision,
        weights_signature_digest=weights.signature.signature_digest if weights.signature else "",
        image_digest=image.digest if image is not None else "",
        runtime_version=version,
        policy_digest=hashlib.sha256(canonical.encode()).hexdigest(),
        suite_version=SUITE_VERSION,
        check_versions=_check_versions(template),
        accepted_deviations={
            check: f"{deviations[check].versions}: {reason}"
            for check, reason in accepted_deviations(settings.validation, template.runtime, version).items()
        },
    )


def _short(value: str) -> str:
    return value.removeprefix("sha256:")[:12] or "-"


def _map_changes(name: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    both = sorted(old.keys() & new.keys())
    changes = [f"{name} {key} {old[key]} -> {new[key]}" for key in both if old[key] != new[key]]
    changes += [f"{name} {key} added" for key in sorted(new.keys() - old.keys())]
    changes += [f"{name} {key} removed" for key in sorted(old.keys() - new.keys())]
    return changes


def changed_inputs(old: CellInputs, new: CellInputs) -> list[str]:
    """Every input that differs, one sentence each (empty: nothing changed)."""
    changes: list[str] = []
    if old.revision != new.revision:
        changes.append(f"revision {_short(old.revision)} -> {_short(new.revision)}")
    if old.weights_signature_digest != new.weights_signature_digest:
        changes.append(
            f"weights signature {_short(old.weights_signature_digest)} -> {_short(new.weights_signature_digest)}"
        )
    if old.image_digest != new.image_digest:
        changes.append(f"image digest {_short(old.image_digest)} -> {_short(new.image_digest)}")
    if old.runtime_version != new.runtime_version:
        changes.append(f"runtime version {old.runtime_version or '-'} -> {new.runtime_version or '-'}")
    if old.policy_digest != new.policy_digest:
        changes.append("the cell's policy (required checks, benchmark bounds, SLOs or launch settings)")
    if old.suite_version != new.suite_version:
        changes.append(f"conformance suite {old.suite_version or '-'} -> {new.suite_version or '-'}")
    changes += _map_changes("check", old.check_versions, new.check_versions)
    changes += _map_changes("accepted deviation", old.accepted_deviations, new.accepted_deviations)
    return changes


@dataclass(frozen=True)
class CellHistory:
    """What the re-validation rule judges: one cell's inputs now and its newest recorded result (None: never)."""

    inputs: CellInputs
    previous: ValidationResult | None


def revalidation_reasons(history: CellHistory) -> list[str]:
    """Why the cell must run (empty: its recorded result stands)."""
    previous = history.previous
    if previous is None:
        return ["never validated at this revision"]
    if previous.verdict is ValidationVerdict.NOT_VALIDATED:
        return [f"the last attempt did not run ({previous.reason[:200]})"]
    if previous.verdict is ValidationVerdict.FAILED and previous.conformance is None:
        return [f"the last attempt failed before the suite ran ({previous.reason[:200]})"]
    if previous.inputs is None:
        return ["recorded before a cell's inputs were tracked"]
    return changed_inputs(previous.inputs, history.inputs)


REVALIDATION: Rule[CellHistory] = CheckAll(revalidation_reasons)
"""accepted: the recorded result stands; rejected: run the cell again (the reasons name what changed)."""


# --------------------------------------------------------------------------------------------- bindings


@dataclass(frozen=True)
class StaleBinding:
    """A published entry bound to an image of `runtime` that is no longer the runtime's current image."""

    entry_id: str
    runtime: str
    bound: str
    current: RuntimeImage

    @property
    def reason(self) -> str:
        return f"{self.runtime} image moved {_short(self.bound.rsplit('@', 1)[-1])} -> {_short(self.current.digest)}"


def stale_bindings(entry: CatalogEntry, current: Mapping[str, RuntimeImage]) -> list[StaleBinding]:
    """The runtimes of `entry` whose current image (`current`: runtime -> image) is another digest."""
    stale: list[StaleBinding] = []
    for runtime, pinned in sorted(entry.images.items()):
        image = current.get(runtime)
        if image is not None and pinned.rsplit("@", 1)[-1] != image.digest:
            stale.append(StaleBinding(entry.id, runtime, pinned, image))
    return stale
