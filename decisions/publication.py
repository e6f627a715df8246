"""Publish (stage 5b): whether a model's catalog entry is published now, which templates it lists, and the entry.

Nothing is published unless screening accepted the model at this revision (and this policy), its weights are
staged, signed and verified in every region of `storage.regions`, and at least one template passed validation
(validators/cells.py) on a scanned (image gate passed) and signed image, against those image and weights
digests. `PUBLICATION_GATE` gives every reason it may not, in sentences, each a rule of the one shape
(registry/rules.py); `build_entry` refuses to build an entry the gate refuses. An entry withdrawn at this very
revision is never re-published (`REPUBLICATION`): a new revision must come first.

The `publish-<entry id>` artifact and the `publish` stage result carry the reasons.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from decisions.errors import PublicationRefusedError
from registry.entries import entry_id
from registry.rules import AllOf, Check, CheckAll, Rule
from registry.runtimes.llama_cpp import RUNTIME as LLAMA_CPP
from registry.schema import (
    CatalogEntry,
    EntryStatus,
    LicenseReference,
    ModelRef,
    Provenance,
    PublishedTemplate,
    RuntimeImage,
    ScreeningReport,
    StagedWeights,
    ValidationResult,
    ValidationVerdict,
    Verdict,
)


@dataclass(frozen=True)
class GateInputs:
    """What the publication decision judges: everything recorded about one model at one revision."""

    ref: ModelRef
    screening: ScreeningReport | None
    weights: StagedWeights | None
    images: Mapping[str, RuntimeImage]
    validations: Sequence[ValidationResult]
    required_regions: tuple[str, ...]
    current: CatalogEntry | None = None
    derived: tuple[StagedWeights, ...] = ()  # GGUF files derived from `weights` (flows/derive.py), for llama.cpp

    def signatures_of(self, runtime: str) -> dict[str, StagedWeights]:
        """signature digest -> the weights a template of `runtime` may have been validated on."""
        if self.weights is None or self.weights.signature is None:
            return {}
        found = {self.weights.signature.signature_digest: self.weights}
        if runtime == LLAMA_CPP.name:
            found |= {d.signature.signature_digest: d for d in self.derived if d.signature is not None}
        return found


# --------------------------------------------------------------------------------------------- inputs


def latest_validations(results: Sequence[ValidationResult]) -> list[ValidationResult]:
    """The newest result of each template (a re-run cell supersedes an older one, passed or not)."""
    newest: dict[str, ValidationResult] = {}
    for result in results:
        current = newest.get(result.template.id)
        if current is None or (result.started_at, result.finished_at or result.started_at) >= (
            current.started_at,
            current.finished_at or current.started_at,
        ):
            newest[result.template.id] = result
    return [newest[key] for key in sorted(newest)]


def choose_images(
    recorded: Mapping[str, Sequence[RuntimeImage]], validations: Sequence[ValidationResult]
) -> dict[str, RuntimeImage]:
    """Per validated runtime, the newest recorded image (newest first in `recorded`) a validation ran on, else
    the newest image."""
    chosen: dict[str, RuntimeImage] = {}
    for runtime in sorted({v.template.runtime for v in validations}):
        images = recorded.get(runtime, ())
        if not images:
            continue
        ran_on = {v.image_digest for v in validations if v.template.runtime == runtime}
        chosen[runtime] = next((image for image in images if image.digest in ran_on), images[0])
    return chosen


def passed_templates(inputs: GateInputs) -> list[ValidationResult]:
    """Validation results that may be listed: passed, on a scanned+signed image, on these weights."""
    listed: list[ValidationResult] = []
    for result in inputs.validations:
        if result.verdict is not ValidationVerdict.PASSED:
            continue
        image = inputs.images.get(result.template.runtime)
        if image is None or image.digest != result.image_digest:
            continue
        if result.weights_signature_digest not in inputs.signatures_of(result.template.runtime):
            continue
        listed.append(result)
    return listed


# --------------------------------------------------------------------------------------------- rules


def screening_accepted(inputs: GateInputs) -> str | None:
    report = inputs.screening
    if report is None or report.ref != inputs.ref:
        return "not screened at this revision"
    if report.verdict is not Verdict.ACCEPTED:
        return f"screening verdict is {report.verdict.value}, not accepted"
    return None


def weights_ready(inputs: GateInputs) -> Iterator[str]:
    weights = inputs.weights
    if weights is None or weights.ref != inputs.ref:
        yield "weights not staged at this revision"
        return
    if weights.signature is None:
        yield "staged weights are not signed"
    missing = [r for r in inputs.required_regions if r not in weights.regions]
    if missing:
        yield f"weights missing in region(s) {', '.join(missing)}"
    unverified = [r for r, copy in weights.regions.items() if copy.verified_at is None]
    if unverified:
        yield f"weights not verified in region(s) {', '.join(sorted(unverified))}"


def templates_listed(inputs: GateInputs) -> Iterator[str]:
    listed = passed_templates(inputs)
    if not listed:
        yield "no deployment template passed validation on a signed, scanned image"
    for result in listed:
        image = inputs.images[result.template.runtime]
        if image.scan is None or not image.scan.passed:
            yield f"image {image.reference} has not passed its vulnerability gate"
        if image.signature is None:
            yield f"image {image.reference} is not signed"


def not_withdrawn_at_this_revision(inputs: GateInputs) -> str | None:
    current = inputs.current
    if current is not None and current.model == inputs.ref and current.status is EntryStatus.WITHDRAWN:
        return f"entry {current.id} was withdrawn at this revision ({current.status_reason}); it is not re-published"
    return None


PUBLICATION_GATE: Rule[GateInputs] = AllOf(
    Check(screening_accepted), CheckAll(weights_ready), CheckAll(templates_listed)
)
"""Every reason this model may not be published now (accepted: it may)."""

REPUBLICATION: Rule[GateInputs] = Check(not_withdrawn_at_this_revision)
"""A model that passes the gate is still not re-published over an entry withdrawn at the same revision."""


def image_move_complete(inputs: GateInputs) -> Iterator[str]:
    """An entry at this revision moves to a runtime's new image only when each of its templates passed there."""
    current = inputs.current
    if current is None or current.model != inputs.ref or current.status is EntryStatus.WITHDRAWN:
        return
    latest = {v.template.id: v for v in inputs.validations}
    for published in current.templates:
        runtime = published.template.runtime
        image = inputs.images.get(runtime)
        if image is None or published.image.rsplit("@", 1)[-1] == image.digest:
            continue
        result = latest.get(published.template.id)
        if result is None or result.image_digest != image.digest:
            why = "not validated on it yet"
        elif result.verdict is not ValidationVerdict.PASSED:
            why = f"{result.verdict.value}: {result.reason[:300]}"
        else:
            continue
        yield (
            f"keeps {runtime} image {published.image}: {published.template.id} has not passed on the new image "
            f"{image.digest} ({why})"
        )


IMAGE_MOVE: Rule[GateInputs] = CheckAll(image_move_complete)
"""An entry bound to a runtime image moves to that runtime's new image only when all its templates passed there;
until then it keeps its binding (rejected: the reasons say which binding is kept and why)."""


def publication_gate(inputs: GateInputs) -> list[str]:
    """Every reason this model may not be published now (empty: it may)."""
    return list(PUBLICATION_GATE.evaluate(inputs).reasons)


# --------------------------------------------------------------------------------------------- the entry


def build_entry(
    inputs: GateInputs,
    *,
    task: str,
    license_reference: LicenseReference,
    provenance: Provenance,
) -> CatalogEntry:
    """The entry the gate allows: the passed templates with their metrics, the weights, the pinned images."""
    reasons = publication_gate(inputs)
    if reasons or inputs.weights is None:
        shown = "; ".join(reasons) or "weights not staged"
        raise PublicationRefusedError(f"{inputs.ref} cannot be published: {shown}")
    listed = passed_templates(inputs)
    templates = tuple(
        PublishedTemplate(
            template=result.template,
            image=inputs.images[result.template.runtime].pinned,
            metrics=result.benchmark,
            accepted_deviations=result.accepted_deviations,
            weights_signature_digest=result.weights_signature_digest,
        )
        for result in sorted(listed, key=lambda r: r.template.id)
    )
    used = {result.template.runtime for result in listed}
    served = {r.weights_signature_digest for r in listed}
    derived = tuple(d for d in inputs.derived if d.signature is not None and d.signature.signature_digest in served)
    return CatalogEntry(
        id=entry_id(inputs.ref.repo_id),
        model=inputs.ref,
        license=license_reference,
        task=task,
        templates=templates,
        weights=inputs.weights,
        derived=derived,
        images={runtime: inputs.images[runtime].pinned for runtime in sorted(used)},
        image_tags={runtime: inputs.images[runtime].reference for runtime in sorted(used)},
        provenance=provenance,
    )
