"""Stage 5b flow: publish one model's verified catalog entry, sign it, export it, upload the export.

`publish_model(repo_id, revision)`:

1. gather the publication inputs from the catalog store: the screening at this revision and policy digest, the
   staged weights, the newest validation per template, and per validated runtime the recorded image the
   validation ran on (`registry.entries.GateInputs`);
2. apply the publication gate (`registry.entries.publication_gate`): any reason -> a `REJECTED` stage result
   listing every reason, and nothing is written to the catalog or the export;
3. build the entry (licence, task, passed templates with metrics, weights per region, pinned images,
   provenance: stage flow run ids, timestamps, tool versions); when the current entry has the same content
   (`registry.catalog_diff.same_content`) nothing new is written and the export is only brought in sync;
4. re-verify before publishing: the weights signature and every blob's sha256 in every region, each image's
   signature over its pinned digest (and its tag still on that digest), and the template bindings
   (`flows/verification.py`); any failure -> a `FAILED` stage result, nothing written;
5. sign the entry and write it with its `publish` stage result in ONE catalog transaction;
6. export every current entry (entries/<id>.json, index.json, keys/<key id>.pem) to `Settings.catalog_export_dir`
   and upload the files that changed to `storage.catalog_container` in every region;
7. a markdown artifact `publish-<entry id>` with the verdict and every reason or the entry's summary.
"""

from __future__ import annotations

import fcntl
import hashlib
import tempfile
import threading
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from pydantic import BaseModel, ConfigDict

from flows.settings import settings_from
from flows.verification import verify_artifacts
from registry.blobs import RegionalBlobStore
from registry.catalog import CatalogStore
from registry.catalog_diff import same_content
from registry.entries import (
    INDEX_SIGNATURE,
    GateInputs,
    PublicationError,
    build_entry,
    entry_digest,
    entry_id,
    export_entries,
    passed_templates,
    publication_gate,
    sign_entry,
    sign_index,
    verify_index,
)
from registry.keys import KeyPair, signing_key
from registry.schema import (
    CatalogEntry,
    EntryStatus,
    ModelRef,
    Provenance,
    RuntimeImage,
    StageName,
    StageOutcome,
    StageResult,
    ValidationResult,
    VerificationCheck,
    utcnow,
)
from registry.settings import Settings

_TOOLS = {"transformers": "transformers", "prefect": "prefect", "model-signing": "model-signing"}
PACKAGE = "model-curation"


_key_lock = threading.Lock()


def _signing_key(settings: Settings) -> KeyPair:
    """`registry.keys.signing_key`, one call at a time: loading rewrites the key files (flows run in threads)."""
    with _key_lock:
        return signing_key(settings)


class ExportSync(BaseModel):
    """What one export did: files written locally, blobs uploaded (region/name), and where the index is."""

    model_config = ConfigDict(frozen=True)

    directory: str
    index: str
    written: tuple[str, ...] = ()
    uploaded: tuple[str, ...] = ()


# --------------------------------------------------------------------------------------------- inputs


def latest_validations(results: list[ValidationResult]) -> list[ValidationResult]:
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


def choose_images(store: CatalogStore, validations: list[ValidationResult]) -> dict[str, RuntimeImage]:
    """Per validated runtime, the newest recorded image a passed validation ran on (else the newest image)."""
    chosen: dict[str, RuntimeImage] = {}
    for runtime in sorted({v.template.runtime for v in validations}):
        recorded = store.images(runtime)
        if not recorded:
            continue
        ran_on = {v.image_digest for v in validations if v.template.runtime == runtime}
        chosen[runtime] = next((image for image in recorded if image.digest in ran_on), recorded[0])
    return chosen


def gather_inputs(store: CatalogStore, settings: Settings, ref: ModelRef) -> GateInputs:
    validations = latest_validations(store.validations(ref))
    return GateInputs(
        ref=ref,
        screening=store.screening(ref, settings.policy_digest()),
        weights=store.staged(ref),
        images=choose_images(store, validations),
        validations=validations,
        required_regions=tuple(settings.storage.regions),
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
    """Flow run ids per stage (newest successful result), the records' own timestamps, tool versions."""
    ref = inputs.ref
    run_ids: dict[str, str] = {}
    for result in store.stage_results(ref):  # newest first
        if result.outcome is StageOutcome.OK and result.run_id and result.stage.value not in run_ids:
            run_ids[result.stage.value] = result.run_id
    stamps: dict[str, datetime] = {}
    if inputs.screening is not None:
        stamps["screened"] = inputs.screening.screened_at
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
    )


# --------------------------------------------------------------------------------------------- tasks


@task(name="reverify-entry")
def reverify(overrides: dict[str, Any] | None, entry: CatalogEntry) -> list[VerificationCheck]:
    """Weights in every region, every image and the template bindings, with the pipeline's own key."""
    settings = settings_from(overrides)
    public = _signing_key(settings).public_key()
    return verify_artifacts(entry, settings.storage, public)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sync(source: Path, target: Path) -> list[str]:
    """Copy every file of `source` into `target` whose bytes differ; returns the relative paths written."""
    written: list[str] = []
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        relative = path.relative_to(source).as_posix()
        destination = target / relative
        data = path.read_bytes()
        if destination.is_file() and destination.read_bytes() == data:
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        temporary = destination.with_name(destination.name + ".tmp")
        temporary.write_bytes(data)
        temporary.replace(destination)
        written.append(relative)
    return written


def export_catalog(settings: Settings) -> ExportSync:
    """Export every current entry and upload the changed files to the catalog container in every region.

    Serialised by an exclusive lock on `<export dir>.lock` (threads and processes): the catalog is read inside
    the lock, so a slower export never overwrites a newer one with an older snapshot.
    """
    directory = settings.catalog_export_dir
    directory.parent.mkdir(parents=True, exist_ok=True)
    with (directory.parent / f".{directory.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return _export_locked(settings, directory)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _sign_index_once(fresh: Path, current: Path, key: KeyPair) -> None:
    """Sign the fresh index, or keep the current signature when the index did not change (ECDSA signatures
    differ on every call, and an unchanged export must write nothing)."""
    same = (current / "index.json").is_file() and (current / "index.json").read_bytes() == (
        fresh / "index.json"
    ).read_bytes()
    if same:
        try:
            verify_index(current, key.public_key())
        except PublicationError:
            same = False
    if same:
        (fresh / INDEX_SIGNATURE).write_bytes((current / INDEX_SIGNATURE).read_bytes())
    else:
        sign_index(fresh, key)


def _export_locked(settings: Settings, directory: Path) -> ExportSync:
    with CatalogStore.from_settings(settings) as store:
        entries = store.entries()
    key = _signing_key(settings)
    with tempfile.TemporaryDirectory(prefix="catalog-export-") as scratch:
        export_entries(entries, Path(scratch), key.public_key())
        _sign_index_once(Path(scratch), directory, key)
        written = _sync(Path(scratch), directory)
    uploaded: list[str] = []
    storage = settings.storage.model_copy(update={"container": settings.storage.catalog_container})
    files = sorted(p for p in directory.rglob("*") if p.is_file() and not p.name.endswith(".tmp"))
    with RegionalBlobStore(storage) as blobs:
        for region in blobs.regions:
            for path in files:
                name = path.relative_to(directory).as_posix()
                data = path.read_bytes()
                digest = _sha256(data)
                info = blobs.properties(region, name)
                if info is not None and info.size == len(data) and info.metadata.get("sha256") == digest:
                    continue
                blobs.put_bytes(region, name, data, metadata={"sha256": digest})
                uploaded.append(f"{region}/{name}")
    return ExportSync(
        directory=str(directory),
        index=str(directory / "index.json"),
        written=tuple(written),
        uploaded=tuple(uploaded),
    )


@task(name="export-catalog", retries=2, retry_delay_seconds=[2, 10])
def export_task(overrides: dict[str, Any] | None) -> ExportSync:
    return export_catalog(settings_from(overrides))


# --------------------------------------------------------------------------------------------- artifacts


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def artifact_key(entry_id_: str) -> str:
    slug = "".join(c if c.isalnum() else "-" for c in entry_id_.lower())
    return f"publish-{slug}"[:100].strip("-")


def rejection_markdown(ref: ModelRef, outcome: StageOutcome, reasons: list[str]) -> str:
    lines = [f"# Not published: `{ref.repo_id}` @ `{ref.revision[:12]}`", "", f"Outcome: **{outcome.value}**", ""]
    lines += [f"- {_cell(reason)}" for reason in reasons]
    return "\n".join(lines) + "\n"


def entry_markdown(entry: CatalogEntry, *, changed: bool, export: ExportSync | None) -> str:
    verb = "Published" if changed else "Unchanged"
    lines = [
        f"# {verb}: `{entry.id}`",
        "",
        f"- model: `{entry.model.repo_id}` @ `{entry.model.revision}`",
        f"- licence: {entry.license.spdx or entry.license.declared or 'unknown'}"
        + (f" ({entry.license.url})" if entry.license.url else ""),
        f"- task: {entry.task}; status: {entry.status.value}",
        f"- entry digest: `{entry_digest(entry)}`",
        (
            f"- export: `{export.index}` ({len(export.written)} file(s) written, "
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
            f"| `{published.template.id}` | `{published.image}` | {throughput} | {ttft} "
            f"| {_cell(', '.join(published.accepted_deviations) or '-')} |"
        )
    lines += ["", "| region | weights |", "| --- | --- |"]
    lines += [f"| {region} | {copy.container_url} |" for region, copy in sorted(entry.weights.regions.items())]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------- flow


def _result(
    ref: ModelRef, outcome: StageOutcome, reason: str, digest: str, run_id: str | None, **payload: Any
) -> StageResult:
    return StageResult(
        ref=ref,
        stage=StageName.PUBLISH,
        outcome=outcome,
        reason=reason,
        policy_digest=digest,
        run_id=run_id,
        payload=payload,
    )


def _refuse(
    settings: Settings, ref: ModelRef, outcome: StageOutcome, reasons: list[str], digest: str, run_id: str | None
) -> StageResult:
    result = _result(ref, outcome, "; ".join(reasons), digest, run_id, reasons=reasons)
    with CatalogStore.from_settings(settings) as store:
        store.record_stage(result)
    create_markdown_artifact(
        key=artifact_key(entry_id(ref.repo_id)),
        markdown=rejection_markdown(ref, outcome, reasons),
        description=f"Publication of {ref}: {outcome.value}",
    )
    get_run_logger().warning("%s not published (%s): %s", ref, outcome.value, "; ".join(reasons))
    return result


@flow(name="publish-model", log_prints=True)
def publish_model(
    repo_id: str, revision: str, overrides: dict[str, Any] | None = None, export: bool = True
) -> StageResult:
    """Publish the catalog entry of `repo_id` at `revision` when every gate holds; see the module docstring.

    Returns the `publish` stage result: OK (payload: entry_id, entry_digest, changed, export), REJECTED (the
    gate's reasons) or FAILED (re-verification failed). Idempotent: an unchanged entry writes nothing new.
    `export=False` leaves the export to the caller (`export_catalog(settings)` once after many models).
    """
    logger = get_run_logger()
    settings = settings_from(overrides)
    ref = ModelRef(repo_id=repo_id, revision=revision)
    digest = settings.policy_digest()
    run_id = str(flow_run.id or "") or None
    with CatalogStore.from_settings(settings) as store:
        inputs = gather_inputs(store, settings, ref)
        reasons = publication_gate(inputs)
        if reasons:
            return _refuse(settings, ref, StageOutcome.REJECTED, reasons, digest, run_id)
        assert inputs.screening is not None  # the gate guarantees it
        listed = passed_templates(inputs)
        entry = build_entry(
            inputs,
            task=listed[0].template.task,
            license_reference=inputs.screening.license,
            provenance=provenance(store, inputs, digest, run_id),
        )
        existing = store.entry(entry.id)
    if existing is not None and existing.model == ref and existing.status is EntryStatus.WITHDRAWN:
        reason = f"entry {entry.id} was withdrawn at this revision ({existing.status_reason}); it is not re-published"
        return _refuse(settings, ref, StageOutcome.SKIPPED, [reason], digest, run_id)
    changed = existing is None or not same_content(existing, entry)
    if changed:
        failures = [c for c in reverify(overrides, entry) if not c.passed]
        if failures:
            return _refuse(
                settings, ref, StageOutcome.FAILED, [f"{c.name}: {c.detail}" for c in failures], digest, run_id
            )
        published = sign_entry(entry, _signing_key(settings))
    else:
        assert existing is not None
        published = existing
    result = _result(
        ref,
        StageOutcome.OK,
        "published" if changed else "unchanged: already published with the same content",
        digest,
        run_id,
        entry_id=published.id,
        entry_digest=entry_digest(published),
        changed=changed,
    )
    if changed:
        with CatalogStore.from_settings(settings) as store, store.transaction():
            store.publish(published)
            store.record_stage(result)
    synced = export_task(overrides) if export else None
    create_markdown_artifact(
        key=artifact_key(published.id),
        markdown=entry_markdown(published, changed=changed, export=synced),
        description=f"Catalog entry {published.id}",
    )
    logger.info(
        "%s %s: %d template(s)", published.id, "published" if changed else "unchanged", len(published.templates)
    )
    if synced is None:
        return result
    logger.info("export wrote %d file(s), uploaded %d blob(s)", len(synced.written), len(synced.uploaded))
    return result.model_copy(update={"payload": {**result.payload, "export": synced.model_dump(mode="json")}})
