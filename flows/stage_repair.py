"""Regions repair themselves: staged weights are checked against the catalog's record in every region, and what
fails is replaced from a verified copy.

`check_and_repair(overrides, weights, regions, deep=...)`, called by `stage_weights` when the revision is already
recorded as staged:

1. audit every region (validators/weights_audit.py): the recorded signature (by its sha256 and the key) and
   manifests, every file's presence and size, and with `deep` every file's sha256 re-computed by reading it;
2. nothing wrong: the record is returned ("already staged");
3. no region holds the recorded signature any more (or it no longer verifies with the configured key): None,
   and the caller stages the model again (a new signature; a live entry naming the old one was already broken);
4. otherwise every problem is repaired (`repair_staged`) and the repairs are recorded: a table artifact
   `repair-<org--name>`, a `stage` result `ok` listing them, and the record with those regions verified now.

`repair_staged` copies the signature's bytes from a region holding the recorded one; deletes blobs outside the
signed file set; replaces a missing, truncated or altered file by server-side copy from a region whose copy
re-hashes to the signed sha256 (the target is re-hashed after the copy), else by uploading it from the Hub at the
pinned revision (downloaded and verified against the record's sha256); and rewrites the manifests from the
record. The weekly audit (flows/audit.py) uses the same functions on published entries, and on the GGUF files
derived from their weights (each at its own `Location`, with no Hub copy to fall back on).
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import get_run_logger, tags, task
from prefect.artifacts import create_table_artifact

from flows.retries import only_retryable
from flows.settings import settings_from
from flows.stage import (
    blob_metadata,
    fetch_weights,
    pipeline_key,
    put_manifests,
    record,
    stage_result,
    store_for,
    work_dir,
)
from registry.artifacts import artifact_key
from registry.blob_errors import BlobIntegrityError
from registry.blob_upload import holds_content
from registry.blobs import (
    RegionalBlobStore,
    derived_prefix,
    derived_quantization,
    manifest_blob_name,
    model_prefix,
    signature_blob_name,
)
from registry.schema import RegionCopy, StagedFile, StagedWeights, StageOutcome
from validators.weights_audit import BlobProblem, Problem, RegionAudit, audit_region

_FILE_PROBLEMS = (Problem.MISSING, Problem.SIZE, Problem.CONTENT)


@dataclass(frozen=True)
class RepairAction:
    """One blob replaced, deleted or rewritten in one region, and where its good copy came from."""

    region: str
    blob: str
    problem: str
    action: str

    def row(self) -> dict[str, str]:
        return {"region": self.region, "blob": self.blob, "problem": self.problem, "action": self.action}


@dataclass(frozen=True)
class Location:
    """Where one signed file set lives in every region, and what its manifests say besides the record: a model's
    staged weights (`of_weights`), or one GGUF derived from them (`of_derived`), which the Hub cannot serve again."""

    prefix: str
    derived_from: str = ""
    quantization: str = ""

    @classmethod
    def of_weights(cls, weights: StagedWeights) -> Location:
        return cls(model_prefix(weights.ref))

    @classmethod
    def of_derived(cls, source: StagedWeights, derived: StagedWeights) -> Location | None:
        """The location of a GGUF derived from `source`, as a catalog entry lists it (None: not named as the
        derive step names its files, or a source without a signature)."""
        names = [f.name for f in derived.files]
        quantization = derived_quantization(source.ref, names[0]) if len(names) == 1 else None
        if quantization is None or source.signature is None or derived.ref != source.ref:
            return None
        return cls(derived_prefix(source.ref, quantization), source.signature.signature_digest, quantization)

    @property
    def on_the_hub(self) -> bool:
        """Whether the Hub serves these files at the pinned revision (a derived GGUF exists only in the regions)."""
        return not self.derived_from


def _at(weights: StagedWeights, location: Location | None) -> Location:
    return location or Location.of_weights(weights)


# --------------------------------------------------------------------------------------------- audit


@task(name="audit-region", retries=2, retry_delay_seconds=[1, 5], retry_condition_fn=only_retryable)
def audit_region_task(
    overrides: dict[str, Any] | None,
    regions: list[str],
    region: str,
    weights: StagedWeights,
    deep: bool,
    byte_budget: int | None = None,
    location: Location | None = None,
) -> RegionAudit:
    settings = settings_from(overrides)
    key, public = pipeline_key(settings)
    trusted = public if weights.signature is not None and weights.signature.key_id == key.key_id else None
    prefix = _at(weights, location).prefix
    with store_for(settings, regions) as store:
        return audit_region(store, region, weights, trusted, deep=deep, byte_budget=byte_budget, prefix=prefix)


def audit_regions(
    overrides: dict[str, Any] | None,
    weights: StagedWeights,
    regions: list[str],
    *,
    deep: bool,
    byte_budget: int | None = None,
    location: Location | None = None,
) -> dict[str, RegionAudit]:
    """Audit every region concurrently (each task tagged `region:<name>`); `byte_budget` is per region."""
    futures = {}
    for region in regions:
        with tags(f"region:{region}"):
            futures[region] = audit_region_task.submit(overrides, regions, region, weights, deep, byte_budget, location)
    return {region: future.result() for region, future in futures.items()}


# --------------------------------------------------------------------------------------------- repair


def _sources(audits: dict[str, RegionAudit], target: str, name: str) -> list[str]:
    """Regions that may hold a good copy of `name`: re-hashed ones first, then those not found wrong."""
    others = [r for r, a in audits.items() if r != target and a.file_ok(name)]
    return sorted(others, key=lambda r: name not in audits[r].verified)


def _replace_file(
    store: RegionalBlobStore,
    audits: dict[str, RegionAudit],
    target: str,
    weights: StagedWeights,
    staged: StagedFile,
    files_dir: Path | None,
    prefix: str,
) -> str | None:
    """Replace one bad file blob in `target`; returns how, or None when no verified copy exists (yet)."""
    assert weights.signature is not None
    name = prefix + staged.name
    metadata = blob_metadata(weights.ref, staged.sha256, weights.signature)
    for source in _sources(audits, target, staged.name):
        if staged.name not in audits[source].verified:
            info = store.properties(source, name)
            if not holds_content(store, source, info, staged.sha256, staged.size):
                continue
        store.delete(target, name)
        store.copy_blob(source, target, name, sha256=staged.sha256, size=staged.size, metadata=metadata)
        how = f"copied from {source}"
        break
    else:
        if files_dir is None:
            return None
        store.delete(target, name)
        store.upload_file(target, name, files_dir / staged.name, sha256=staged.sha256, metadata=metadata)
        how = "uploaded from the Hub at the pinned revision"
    if not holds_content(store, target, store.properties(target, name), staged.sha256, staged.size):
        raise BlobIntegrityError(
            f"{staged.name} in region {target} still does not match its signed sha256 after it was {how}; "
            "check the storage account, then run `curate stage` again",
            region=target,
            blob_name=name,
        )
    return how


def _copy_signature(
    store: RegionalBlobStore, audits: dict[str, RegionAudit], target: str, weights: StagedWeights, prefix: str
) -> str:
    assert weights.signature is not None
    name = prefix + signature_blob_name(weights.signature)
    source = next(r for r, a in audits.items() if r != target and a.signature_ok)
    data = store.get_bytes(source, name, max_bytes=16 * 1024 * 1024)
    digest = weights.signature.signature_digest
    if hashlib.sha256(data).hexdigest() != digest.removeprefix("sha256:"):
        raise BlobIntegrityError(f"the signature in region {source} changed while it was repaired", region=source)
    store.put_bytes(target, name, data, metadata=blob_metadata(weights.ref, digest, weights.signature))
    if not store.holds_bytes(target, name, data):
        raise BlobIntegrityError(f"the signature written to region {target} does not read back", region=target)
    return f"copied from {source}"


@task(name="repair-region", retries=2, retry_delay_seconds=[1, 5], retry_condition_fn=only_retryable)
def repair_region(
    overrides: dict[str, Any] | None,
    audits: dict[str, RegionAudit],
    target: str,
    weights: StagedWeights,
    problems: list[BlobProblem],
    files_dir: str | None = None,
    location: Location | None = None,
) -> tuple[list[RepairAction], list[BlobProblem]]:
    """Repair `problems` of region `target`; returns what was done and what still needs a copy from the Hub."""
    settings = settings_from(overrides)
    files = {f.name: f for f in weights.files}
    actions: list[RepairAction] = []
    unresolved: list[BlobProblem] = []
    at = _at(weights, location)
    prefix = at.prefix
    with store_for(settings, list(audits)) as store:
        for problem in problems:
            how: str | None
            if problem.problem is Problem.EXTRA:
                store.delete(target, prefix + problem.name)
                how = "deleted"
            elif problem.problem is Problem.SIGNATURE:
                how = _copy_signature(store, audits, target, weights, prefix)
            elif problem.problem in _FILE_PROBLEMS:
                local = Path(files_dir) if files_dir else None
                how = _replace_file(store, audits, target, weights, files[problem.name], local, prefix)
            else:
                continue  # manifests: rewritten below
            if how is None:
                unresolved.append(problem)
            else:
                actions.append(RepairAction(target, problem.name, f"{problem.problem.value}: {problem.detail}", how))
        if problems and not unresolved:
            assert weights.signature is not None
            put_manifests(
                store,
                target,
                weights.ref,
                weights.files,
                weights.signature,
                weights.staged_at,
                prefix=prefix,
                derived_from=at.derived_from,
                quantization=at.quantization,
            )
            for problem in problems:
                if problem.problem is Problem.MANIFEST:
                    actions.append(RepairAction(target, problem.name, problem.detail, "rewritten from the record"))
    return actions, unresolved


def _from_hub(overrides: dict[str, Any] | None, weights: StagedWeights, work: Path) -> Path:
    """Download the revision from the Hub (verified against the Hub's hashes), check it is the recorded content."""
    files_dir = work / "files"
    fetched = fetch_weights(overrides, weights.ref, str(files_dir))
    got = {f.name: f.sha256 for f in fetched.files}
    lost = [f.name for f in weights.files if got.get(f.name) != f.sha256]
    if lost:
        raise BlobIntegrityError(
            f"no region holds a verified copy of {', '.join(lost[:5])} of {weights.ref}, and the Hub no longer "
            "serves the recorded content; stage it again with `curate stage --force` (then re-validate)"
        )
    return files_dir


def repair_staged(
    overrides: dict[str, Any] | None,
    weights: StagedWeights,
    audits: dict[str, RegionAudit],
    location: Location | None = None,
) -> list[RepairAction]:
    """Repair every problem the audits found (at least one region must hold the recorded signature).

    Raises BlobIntegrityError when no region holds a verified copy of a file the Hub cannot serve again either."""
    actions: list[RepairAction] = []
    pending: dict[str, list[BlobProblem]] = {}
    for region, audit in audits.items():
        if audit.problems:
            with tags(f"region:{region}"):
                done, left = repair_region(overrides, audits, region, weights, audit.problems, location=location)
            actions += done
            if left:
                manifests = [p for p in audit.problems if p.problem is Problem.MANIFEST]
                pending[region] = left + manifests
    if pending and not _at(weights, location).on_the_hub:
        lost = sorted({p.name for problems in pending.values() for p in problems if p.problem in _FILE_PROBLEMS})
        raise BlobIntegrityError(
            f"no region holds a verified copy of {', '.join(lost[:5])} derived from {weights.ref}; derive it again: "
            f"`curate rerun {weights.ref.repo_id} --from-stage stage`"
        )
    if pending:
        work = work_dir(settings_from(overrides), weights.ref) / "repair"
        try:
            files_dir = _from_hub(overrides, weights, work)
            for region, problems in pending.items():
                with tags(f"region:{region}"):
                    done, _ = repair_region(overrides, audits, region, weights, problems, str(files_dir))
                actions += done
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return actions


def repair_artifact(weights: StagedWeights, actions: list[RepairAction]) -> None:
    if actions:
        create_table_artifact(
            key=artifact_key("repair", weights.ref.org, weights.ref.name),
            table=[a.row() for a in actions],
            description=f"Blobs of {weights.ref} repaired from verified copies ({len(actions)}).",
        )


# --------------------------------------------------------------------------------------------- stage flow


def _repaired_record(store: RegionalBlobStore, weights: StagedWeights, regions: list[str]) -> StagedWeights:
    """The record with every repaired (or newly filled) region marked verified now."""
    assert weights.signature is not None
    prefix = model_prefix(weights.ref)
    copies = dict(weights.regions)
    for region in regions:
        copies[region] = RegionCopy(
            region=region,
            container_url=store.blob_url(region, prefix),
            manifest_url=store.blob_url(region, prefix + manifest_blob_name(weights.signature)),
            verified_at=datetime.now(UTC),
        )
    return weights.model_copy(update={"regions": copies})


def check_and_repair(
    overrides: dict[str, Any] | None,
    weights: StagedWeights,
    regions: list[str],
    *,
    deep: bool,
    run_id: str | None,
) -> StagedWeights | None:
    """The record if every region holds what it names (after repairs); None when the model must be staged again."""
    logger = get_run_logger()
    audits = audit_regions(overrides, weights, regions, deep=deep)
    problems = [p for a in audits.values() for p in a.problems]
    missing_regions = [r for r in regions if r not in weights.regions]
    if not problems and not missing_regions:
        checked = "every blob re-hashed" if deep else "signature, manifests and blob sizes"
        logger.info("%s is already staged in %s (%s checked); nothing to do", weights.ref, ", ".join(regions), checked)
        return weights
    if not any(a.signature_ok for a in audits.values()):
        logger.warning("no region holds the recorded signature of %s: staging it again", weights.ref)
        return None
    actions = repair_staged(overrides, weights, audits)
    settings = settings_from(overrides)
    touched = sorted({a.region for a in actions} | set(missing_regions))
    with store_for(settings, regions) as store:
        repaired = _repaired_record(store, weights, touched)
    result = stage_result(
        weights.ref,
        StageOutcome.OK,
        settings.policy_digest("stage"),
        run_id,
        reason=f"repaired {len(actions)} blob(s) in {', '.join(touched)}",
        payload={"repairs": [a.row() for a in actions], **repaired.model_dump(mode="json")},
    )
    record(settings, result, repaired)
    repair_artifact(weights, actions)
    for action in actions:
        logger.warning("repaired %s in %s (%s): %s", action.blob, action.region, action.problem, action.action)
    return repaired
