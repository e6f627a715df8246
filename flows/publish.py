"""Stage 5b flow: publish one model's verified catalog entry, sign it, export it, upload the export.

`publish_model(repo_id, revision)`, orchestration only:

1. gather the publication inputs from the catalog store: the screening at this revision and policy digest, the
   staged weights, the newest validation per template, per validated runtime the recorded image the
   validation ran on, and the current entry (`decisions.publication.GateInputs`);
2. apply the publication decision (`decisions.publication`): any reason -> a `REJECTED` stage result listing
   every reason (`SKIPPED` when the entry was withdrawn at this revision), and nothing is written;
3. build the entry (licence, task, passed templates with metrics, weights per region, pinned images,
   provenance: stage flow run ids, timestamps, tool versions); when the current entry has the same content
   (`registry.entries.same_content`) nothing new is written and the export is only brought in sync;
4. re-verify before publishing: the weights signature and every blob's sha256 in every region, each image's
   signature over its pinned digest (and its tag still on that digest), and the template bindings
   (validators/verification.py); any failure -> a `FAILED` stage result, nothing written;
5. sign the entry and write it with its `publish` stage result in ONE catalog transaction;
6. export every current entry and upload the files that changed (registry/catalog_export.py);
7. a markdown artifact `publish-<entry id>` with the verdict and every reason or the entry's summary.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from decisions.publication import (
    IMAGE_MOVE,
    PUBLICATION_GATE,
    REPUBLICATION,
    GateInputs,
    build_entry,
    choose_images,
    latest_validations,
    passed_templates,
)
from flows.derive import derived_weights
from flows.settings import settings_from
from registry.artifacts import artifact_key, cell, code
from registry.catalog import CatalogStore
from registry.catalog_export import ExportSync, export_catalog
from registry.entries import entry_digest, entry_id, same_content, sign_entry
from registry.keys import signing_key
from registry.schema import (
    CatalogEntry,
    ModelRef,
    Provenance,
    ReviewDecision,
    ReviewVerdict,
    StageName,
    StageOutcome,
    StageResult,
    utcnow,
)
from registry.settings import Settings
from registry.verification_records import VerificationCheck
from validators.verification import verify_artifacts

_TOOLS = {"transformers": "transformers", "prefect": "prefect", "model-signing": "model-signing"}
PACKAGE = "model-curation"


# --------------------------------------------------------------------------------------------- inputs


def gather_inputs(store: CatalogStore, settings: Settings, ref: ModelRef) -> GateInputs:
    validations = latest_validations(store.validations(ref))
    recorded = {runtime: store.images(runtime) for runtime in {v.template.runtime for v in validations}}
    weights = store.staged(ref)
    return GateInputs(
        ref=ref,
        screening=store.screening(ref, settings.policy_digest("screen")),
        weights=weights,
        derived=derived_weights(settings, weights, store),
        images=choose_images(recorded, validations),
        validations=validations,
        required_regions=tuple(settings.storage.regions),
        current=store.entry(entry_id(ref.repo_id)),
    )


def _version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return ""


def tool_versions(inputs: GateInputs) -> dict[str, str]:
    tools = {name: _version(dist) for name, dist in _TOOLS.items()}
    tools[PACKAGE] = _version(PACKAGE)
    trivy = sorted({i.scan.scanner_version for i in inputs.images.values() if i.scan and i.scan.scanner_version})
    if trivy:
        tools["trivy"] = ", ".join(trivy)
    return {k: v for k, v in sorted(tools.items()) if v}


def provenance(store: CatalogStore, inputs: GateInputs, policy_digest: str, run_id: str | None) -> Provenance:
    """Flow run ids per stage (newest successful result), the records' own timestamps, tool versions, and the
    maintainer approvals the screening was accepted on."""
    ref = inputs.ref
    run_ids: dict[str, str] = {}
    for result in store.stage_results(ref):  # newest first
        if result.outcome is StageOutcome.OK and result.run_id and result.stage.value not in run_ids:
            run_ids[result.stage.value] = result.run_id
    stamps: dict[str, datetime] = {}
    approvals: tuple[ReviewDecision, ...] = ()
    if inputs.screening is not None:
        stamps["screened"] = inputs.screening.screened_at
        approvals = tuple(d for d in inputs.screening.reviews if d.verdict is ReviewVerdict.APPROVE)
    for approval in approvals:
        stamps["approved"] = approval.decided_at
        if approval.flow_run_id:
            run_ids["review"] = approval.flow_run_id
    if inputs.weights is not None:
        stamps["staged"] = inputs.weights.staged_at
    for validation in passed_templates(inputs):
        stamps[f"validated:{validation.template.id}"] = validation.finished_at or validation.started_at
        if validation.flow_run_id:
            run_ids[f"validate:{validation.template.id}"] = validation.flow_run_id
    for runtime, image in sorted(inputs.images.items()):
        stamps[f"image-built:{runtime}"] = image.built_at
    if run_id:
        run_ids[StageName.PUBLISH.value] = run_id
    stamps["published"] = utcnow()
    return Provenance(
        flow_run_ids=run_ids,
        timestamps=stamps,
        tool_versions=tool_versions(inputs),
        policy_digest=policy_digest,
        approvals=approvals,
    )


# --------------------------------------------------------------------------------------------- tasks


@task(name="reverify-entry")
def reverify(overrides: dict[str, Any] | None, entry: CatalogEntry) -> list[VerificationCheck]:
    """Weights in every region, every image and the template bindings, with the pipeline's own key."""
    settings = settings_from(overrides)
    return verify_artifacts(entry, settings.storage, signing_key(settings).public_key())


@task(name="export-catalog", retries=2, retry_delay_seconds=[2, 10])
def export_task(overrides: dict[str, Any] | None) -> ExportSync:
    return export_catalog(settings_from(overrides))


# --------------------------------------------------------------------------------------------- artifacts


def rejection_markdown(ref: ModelRef, outcome: StageOutcome, reasons: list[str]) -> str:
    lines = [f"# Not published: {code(ref.repo_id)} @ {code(ref.revision[:12])}", "", f"Outcome: **{outcome.value}**"]
    lines += [""] + [f"- {cell(reason)}" for reason in reasons]
    return "\n".join(lines) + "\n"


def entry_markdown(entry: CatalogEntry, *, changed: bool, export: ExportSync | None) -> str:
    verb = "Published" if changed else "Unchanged"
    lines = [
        f"# {verb}: {code(entry.id)}",
        "",
        f"- model: {code(entry.model.repo_id)} @ {code(entry.model.revision)}",
        f"- licence: {cell(entry.license.spdx or entry.license.declared or 'unknown')}"
        + (f" ({cell(entry.license.url)})" if entry.license.url else ""),
        f"- task: {entry.task}; status: {entry.status.value}",
        f"- entry digest: {code(entry_digest(entry))}",
        (
            f"- export: {code(export.index)} ({len(export.written)} file(s) written, "
            f"{len(export.uploaded)} blob(s) uploaded)"
            if export is not None
            else "- export: left to the caller"
        ),
        "",
        "| template | image | output tok/s | TTFT p50 (s) | accepted deviations |",
        "| --- | --- | --- | --- | --- |",
    ]
    for published in entry.templates:
        metrics = published.metrics[0] if published.metrics else None
        throughput = f"{metrics.output_token_throughput:.1f}" if metrics else "-"
        ttft = f"{metrics.ttft_s.p50:.3f}" if metrics and metrics.ttft_s else "-"
        lines.append(
            f"| {code(published.template.id)} | {code(published.image)} | {throughput} | {ttft} "
            f"| {cell(', '.join(published.accepted_deviations) or '-')} |"
        )
    lines += ["", "| region | weights |", "| --- | --- |"]
    regions = sorted(entry.weights.regions.items())
    lines += [f"| {cell(region)} | {cell(copy.container_url)} |" for region, copy in regions]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------- flow


@dataclass(frozen=True)
class _Publication:
    """One run of `publish_model`: what every stage result it records carries."""

    settings: Settings
    ref: ModelRef
    digest: str
    run_id: str | None

    def result(self, outcome: StageOutcome, reason: str, **payload: Any) -> StageResult:
        return StageResult(
            ref=self.ref,
            stage=StageName.PUBLISH,
            outcome=outcome,
            reason=reason,
            policy_digest=self.digest,
            run_id=self.run_id,
            payload=payload,
        )

    def refuse(self, outcome: StageOutcome, reasons: list[str]) -> StageResult:
        """Record why nothing was published, in the stage result and the `publish-<entry id>` artifact."""
        result = self.result(outcome, "; ".join(reasons), reasons=reasons)
        with CatalogStore.from_settings(self.settings) as store:
            store.record_stage(result)
        create_markdown_artifact(
            key=artifact_key("publish", entry_id(self.ref.repo_id)),
            markdown=rejection_markdown(self.ref, outcome, reasons),
            description=f"Publication of {self.ref}: {outcome.value}",
        )
        get_run_logger().warning("%s not published (%s): %s", self.ref, outcome.value, "; ".join(reasons))
        return result


def _keep_binding(run: _Publication, current: CatalogEntry, reasons: tuple[str, ...]) -> StageResult:
    """The entry keeps its image binding: say so on the entry (its status reason) and in the stage result."""
    note = "; ".join(reasons)
    with CatalogStore.from_settings(run.settings) as store:
        kept = [part for part in current.status_reason.split("; ") if part and not part.startswith("keeps ")]
        reason = "; ".join([*kept, note])
        if reason != current.status_reason:
            store.set_entry_status(current.id, current.status, reason)
    return run.refuse(StageOutcome.SKIPPED, list(reasons))


def _decide(run: _Publication) -> CatalogEntry | StageResult:
    """The entry the publish decision allows, or the recorded refusal."""
    with CatalogStore.from_settings(run.settings) as store:
        inputs = gather_inputs(store, run.settings, run.ref)
        move = IMAGE_MOVE.evaluate(inputs)
        if not move.accepted and inputs.current is not None:
            return _keep_binding(run, inputs.current, move.reasons)
        gate = PUBLICATION_GATE.evaluate(inputs)
        if not gate.accepted:
            return run.refuse(StageOutcome.REJECTED, list(gate.reasons))
        again = REPUBLICATION.evaluate(inputs)
        if not again.accepted:
            return run.refuse(StageOutcome.SKIPPED, list(again.reasons))
        assert inputs.screening is not None  # the gate guarantees it
        return build_entry(
            inputs,
            task=passed_templates(inputs)[0].template.task,
            license_reference=inputs.screening.license,
            provenance=provenance(store, inputs, run.digest, run.run_id),
        )


def _announce(published: CatalogEntry, changed: bool, synced: ExportSync | None) -> None:
    create_markdown_artifact(
        key=artifact_key("publish", published.id),
        markdown=entry_markdown(published, changed=changed, export=synced),
        description=f"Catalog entry {published.id}",
    )
    logger = get_run_logger()
    verb = "published" if changed else "unchanged"
    logger.info("%s %s: %d template(s)", published.id, verb, len(published.templates))
    if synced is not None:
        logger.info("export wrote %d file(s), uploaded %d blob(s)", len(synced.written), len(synced.uploaded))


@flow(name="publish-model", log_prints=True)
def publish_model(
    repo_id: str, revision: str, overrides: dict[str, Any] | None = None, export: bool = True
) -> StageResult:
    """Publish the catalog entry of `repo_id` at `revision` when every gate holds; see the module docstring.

    Returns the `publish` stage result: OK (payload: entry_id, entry_digest, changed, export), REJECTED (the
    gate's reasons), SKIPPED (withdrawn at this revision) or FAILED (re-verification failed). Idempotent: an
    unchanged entry writes nothing new. `export=False` leaves the export to the caller (`export_catalog`).
    """
    settings = settings_from(overrides)
    ref = ModelRef(repo_id=repo_id, revision=revision)
    run = _Publication(settings, ref, settings.policy_digest(), str(flow_run.id or "") or None)
    entry = _decide(run)
    if isinstance(entry, StageResult):
        return entry
    with CatalogStore.from_settings(settings) as store:
        existing = store.entry(entry.id)
    changed = existing is None or not same_content(existing, entry)
    published = existing if existing is not None and not changed else None
    if published is None:
        failures = [c for c in reverify(overrides, entry) if not c.passed]
        if failures:
            return run.refuse(StageOutcome.FAILED, [f"{c.name}: {c.detail}" for c in failures])
        published = sign_entry(entry, signing_key(settings))
    reason = "published" if changed else "unchanged: already published with the same content"
    result = run.result(
        StageOutcome.OK, reason, entry_id=published.id, entry_digest=entry_digest(published), changed=changed
    )
    if changed:
        with CatalogStore.from_settings(settings) as store, store.transaction():
            store.publish(published)
            store.record_stage(result)
    synced = export_task(overrides) if export else None
    _announce(published, changed, synced)
    if synced is None:
        return result
    return result.model_copy(update={"payload": {**result.payload, "export": synced.model_dump(mode="json")}})
