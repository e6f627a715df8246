"""Stage 4 flow: download, verify, sign and stage a model's safetensors weights to every regional account.

Steps (each a Prefect task; storage tasks carry a `region:<name>` tag so a tag concurrency limit bounds the
work per region):

1. resolve the revision (a branch becomes a commit sha once);
2. download the safetensors and serving files of that revision (holding a `hub-downloads` slot, a global
   concurrency limit shared by every worker: registry/quotas.py), verify each against the Hub's LFS sha256 /
   git oid and size, and check the tensors against config.json (validators/weights.py);
3. sign the verified file set with model-signing (validators/weights_signing.py);
4. block-upload the files and the signature to the primary region, holding a `blob-uploads` slot (resumable,
   idempotent: registry/blobs.py);
5. fill the other regions by server-side copy from the primary (the worker reads the source once);
6. verify every region: the signature by the key, every blob's sha256 re-computed by streaming;
7. write each region's manifest (last), then record `StagedWeights` in the catalog store.

A failure anywhere leaves nothing recorded as staged. Transient storage and Hub errors are retried.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from cryptography.hazmat.primitives.asymmetric import ec
from prefect import flow, get_run_logger, tags, task
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.runtime import flow_run
from pydantic import BaseModel, ConfigDict

from flows.limits import slot
from flows.settings import settings_from
from registry.artifacts import artifact_key
from registry.blob_errors import BlobIntegrityError
from registry.blobs import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    RegionalBlobStore,
    WeightsManifest,
    model_prefix,
)
from registry.catalog import CatalogStore
from registry.errors import RegistryError
from registry.hub import hub_source
from registry.keys import KeyPair, signing_key
from registry.quotas import BLOB_UPLOADS, HUB_DOWNLOADS
from registry.schema import (
    Finding,
    ModelRef,
    RegionCopy,
    Severity,
    Signature,
    StagedFile,
    StagedWeights,
    StageName,
    StageOutcome,
    StageResult,
)
from registry.settings import Settings
from validators.errors import ValidatorError
from validators.weights import (
    TensorReport,
    WeightsRejectedError,
    check_tensors,
    download_weights,
    select_files,
)
from validators.weights_signing import WeightsSignatureError, sign_weights, verify_envelope, verify_remote

# --------------------------------------------------------------------------------------------- progress


@dataclass(frozen=True)
class ProgressEvent:
    """Bytes done in one phase ("download", "upload", "copy", "verify") of one region."""

    phase: str
    region: str
    advance: int
    total: int


_listeners: list[Callable[[ProgressEvent], None]] = []
_listeners_lock = threading.Lock()


def add_progress_listener(listener: Callable[[ProgressEvent], None]) -> Callable[[], None]:
    """Receive progress events of stage flows run in this process (CLI progress bars); returns a remover."""
    with _listeners_lock:
        _listeners.append(listener)

    def remove() -> None:
        with _listeners_lock:
            if listener in _listeners:
                _listeners.remove(listener)

    return remove


def _emit(event: ProgressEvent) -> None:
    with _listeners_lock:
        listeners = list(_listeners)
    for listener in listeners:
        listener(event)


class _ArtifactProgress:
    """A Prefect progress artifact updated at most every 2 s (and at 100%), plus the in-process listeners."""

    def __init__(self, phase: str, region: str, total: int, description: str) -> None:
        self.phase, self.region, self.total = phase, region, max(total, 1)
        self.done = 0
        self._last = 0.0
        self._lock = threading.Lock()
        key = artifact_key("stage", phase, region)
        created = create_progress_artifact(progress=0.0, key=key, description=description)
        assert isinstance(created, UUID)
        self._id: UUID = created
        _emit(ProgressEvent(phase, region, 0, total))

    def advance(self, amount: int) -> None:
        with self._lock:
            self.done += amount
            now = time.monotonic()
            push = now - self._last >= 2.0 or self.done >= self.total
            if push:
                self._last = now
            progress = min(100.0, 100.0 * self.done / self.total)
        _emit(ProgressEvent(self.phase, self.region, amount, self.total))
        if push:
            update_progress_artifact(self._id, progress)


# --------------------------------------------------------------------------------------------- retries


def _retryable(_task: Any, _task_run: Any, state: Any) -> bool:
    """Retry only what may get better by waiting: errors whose `retryable` is true (storage, Hub)."""
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001 - inspected only; the task's failure still propagates
        return bool(getattr(exc, "retryable", False))
    return False


# --------------------------------------------------------------------------------------------- records


class FetchedWeights(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    ref: ModelRef
    files: tuple[StagedFile, ...]
    tensors: TensorReport


def _metadata(ref: ModelRef, sha256: str, signature: Signature) -> dict[str, str]:
    return {
        "repo": ref.repo_id,
        "revision": ref.revision,
        "sha256": sha256,
        "signature_digest": signature.signature_digest,
    }


def _store(settings: Settings, regions: list[str]) -> RegionalBlobStore:
    return RegionalBlobStore(settings.storage, regions=tuple(regions))


def _signing_key(settings: Settings) -> tuple[KeyPair, ec.EllipticCurvePublicKey]:
    """`registry.keys.signing_key` (which serialises access to the key files) and its public key."""
    key = signing_key(settings)
    return key, key.public_key()


def work_dir(settings: Settings, ref: ModelRef) -> Path:
    return settings.data_dir / "staging" / f"{ref.org}--{ref.name}--{ref.revision}"


# --------------------------------------------------------------------------------------------- tasks


@task(
    name="resolve-revision",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=_retryable,
    tags=["hub"],
)
def resolve_revision(overrides: dict[str, Any] | None, repo_id: str, revision: str | None) -> ModelRef:
    settings = settings_from(overrides)
    source = hub_source(settings.hub)
    try:
        return source.model_info(repo_id, revision).ref()
    finally:
        source.close()


@task(name="fetch-weights", retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=_retryable, tags=["hub"])
def fetch_weights(overrides: dict[str, Any] | None, ref: ModelRef, files_dir: str) -> FetchedWeights:
    """Download the revision's weights and serving files, verify hashes and tensors; reject on mismatch."""
    settings = settings_from(overrides)
    source = hub_source(settings.hub)
    try:
        info = source.model_info(ref.repo_id, ref.revision)
        if info.sha != ref.revision:
            raise WeightsRejectedError(
                ref,
                [_finding("weights.revision-moved", f"the Hub answered revision {info.sha} for {ref.revision}")],
            )
        wanted = select_files(info)
        total = sum(f.size or 0 for f in wanted)
        progress = _ArtifactProgress("download", "hub", total, f"Downloading {ref}")
        with slot(settings, HUB_DOWNLOADS):  # one download stream per slot, across every worker
            files = download_weights(
                source, info, wanted, Path(files_dir), on_file=lambda entry: progress.advance(entry.size or 0)
            )
    finally:
        source.close()
    report = check_tensors(Path(files_dir), info, settings.screening)
    if report.blocking:
        raise WeightsRejectedError(ref, report.findings)
    return FetchedWeights(ref=ref, files=tuple(files), tensors=report)


def _finding(code: str, message: str) -> Finding:
    return Finding(scanner="weights", code=code, severity=Severity.HIGH, message=message)


@task(name="sign-weights")
def sign_staged(overrides: dict[str, Any] | None, fetched: FetchedWeights, files_dir: str, sig_path: str) -> Signature:
    """Sign the verified file set; the signed digests must be exactly the verified sha256s."""
    settings = settings_from(overrides)
    reference = f"{settings.storage.container}/{model_prefix(fetched.ref)}{SIGNATURE_NAME}"
    key, public = _signing_key(settings)
    signature = sign_weights(Path(files_dir), Path(sig_path), key, reference=reference)
    signed = verify_envelope(Path(sig_path).read_bytes(), public).files
    verified = {f.name: f.sha256 for f in fetched.files}
    if signed != verified:
        raise WeightsSignatureError(
            f"the signed file set of {fetched.ref} differs from the verified one (files changed on disk "
            "while staging); stage it again"
        )
    return signature


@task(name="upload-primary", retries=3, retry_delay_seconds=[1, 4, 10], retry_condition_fn=_retryable)
def upload_primary(
    overrides: dict[str, Any] | None,
    regions: list[str],
    fetched: FetchedWeights,
    *,
    files_dir: str,
    sig_path: str,
    signature: Signature,
) -> dict[str, int]:
    """Block-upload every file and the signature to the primary region; returns blocks/bytes sent."""
    settings = settings_from(overrides)
    prefix = model_prefix(fetched.ref)
    totals = {"blocks_sent": 0, "blocks_reused": 0, "bytes_sent": 0, "files_skipped": 0}
    with _store(settings, regions) as store:
        region = store.primary
        total = sum(f.size for f in fetched.files)
        progress = _ArtifactProgress("upload", region, total, f"Uploading {fetched.ref} to {region}")
        for staged in fetched.files:
            stats = store.upload_file(
                region,
                prefix + staged.name,
                Path(files_dir) / staged.name,
                sha256=staged.sha256,
                metadata=_metadata(fetched.ref, staged.sha256, signature),
                on_progress=progress.advance,
            )
            totals["blocks_sent"] += stats.blocks_sent
            totals["blocks_reused"] += stats.blocks_reused
            totals["bytes_sent"] += stats.bytes_sent
            totals["files_skipped"] += int(stats.skipped)
        sig = Path(sig_path).read_bytes()
        store.put_bytes(
            region,
            prefix + SIGNATURE_NAME,
            sig,
            metadata=_metadata(fetched.ref, signature.signature_digest, signature),
        )
    return totals


@task(name="replicate-region", retries=3, retry_delay_seconds=[1, 4, 10], retry_condition_fn=_retryable)
def replicate_region(
    overrides: dict[str, Any] | None,
    regions: list[str],
    target: str,
    fetched: FetchedWeights,
    signature: Signature,
) -> int:
    """Server-side copy of every file and the signature from the primary region; returns copies started."""
    settings = settings_from(overrides)
    prefix = model_prefix(fetched.ref)
    copied = 0
    with _store(settings, regions) as store:
        total = sum(f.size for f in fetched.files)
        progress = _ArtifactProgress("copy", target, total, f"Copying {fetched.ref} to {target}")
        sig_info = store.properties(store.primary, prefix + SIGNATURE_NAME)
        if sig_info is None:
            raise BlobIntegrityError(f"the signature of {fetched.ref} is missing in {store.primary}; stage it again")
        sig_size = sig_info.size
        items = [(f.name, f.sha256, f.size) for f in fetched.files]
        items.append((SIGNATURE_NAME, signature.signature_digest, sig_size))
        for name, sha256, size in items:
            copied += store.copy_blob(
                store.primary,
                target,
                prefix + name,
                sha256=sha256,
                size=size,
                metadata=_metadata(fetched.ref, sha256, signature),
            )
            if name != SIGNATURE_NAME:
                progress.advance(size)
    return copied


@task(name="verify-region", retries=2, retry_delay_seconds=[1, 5], retry_condition_fn=_retryable)
def verify_region(
    overrides: dict[str, Any] | None, regions: list[str], region: str, ref: ModelRef, sig_path: str
) -> str:
    """Verify the region's signature by the key and every blob by streamed sha256; delete a bad blob."""
    settings = settings_from(overrides)
    _, public = _signing_key(settings)
    with _store(settings, regions) as store:
        try:
            verify_remote(
                store,
                region,
                model_prefix(ref),
                public,
                expected_signature=Path(sig_path).read_bytes(),
            )
        except BlobIntegrityError as exc:
            if exc.blob_name:
                store.delete(region, exc.blob_name)
            raise
    return datetime.now(UTC).isoformat()


@task(name="write-manifest", retries=3, retry_delay_seconds=[1, 4, 10], retry_condition_fn=_retryable)
def write_manifest(
    overrides: dict[str, Any] | None,
    regions: list[str],
    region: str,
    fetched: FetchedWeights,
    *,
    signature: Signature,
    verified_at: str,
) -> RegionCopy:
    settings = settings_from(overrides)
    prefix = model_prefix(fetched.ref)
    manifest = WeightsManifest(
        repo_id=fetched.ref.repo_id,
        revision=fetched.ref.revision,
        files=fetched.files,
        signature=signature,
        region=region,
        staged_at=datetime.now(UTC),
    )
    with _store(settings, regions) as store:
        store.put_bytes(region, prefix + MANIFEST_NAME, manifest.to_bytes())
        return RegionCopy(
            region=region,
            container_url=store.blob_url(region, prefix),
            manifest_url=store.blob_url(region, prefix + MANIFEST_NAME),
            verified_at=datetime.fromisoformat(verified_at),
        )


# --------------------------------------------------------------------------------------------- checks


def manifests_current(settings: Settings, weights: StagedWeights, regions: list[str]) -> bool:
    """Cheap check that a recorded staging is still complete: each region's manifest matches the record."""
    if weights.signature is None or any(r not in weights.regions for r in regions):
        return False
    prefix = model_prefix(weights.ref)
    with _store(settings, regions) as store:
        for region in regions:
            if store.properties(region, prefix + MANIFEST_NAME) is None:
                return False
            manifest = WeightsManifest.model_validate_json(store.get_bytes(region, prefix + MANIFEST_NAME))
            if manifest.files != weights.files or manifest.signature != weights.signature:
                return False
    return True


def verify_staged(settings: Settings, weights: StagedWeights, region: str) -> None:
    """Verify a staged copy before use: signature by the configured key, every blob by streamed sha256.

    Raises WeightsSignatureError (wrong key, altered signature) or BlobIntegrityError (altered blob).
    """
    if weights.signature is None:
        raise WeightsSignatureError(f"{weights.ref} was recorded without a signature; stage it again")
    key, public = _signing_key(settings)
    if key.key_id != weights.signature.key_id:
        raise WeightsSignatureError(
            f"{weights.ref} was signed by key {weights.signature.key_id[:16]}, the configured key is "
            f"{key.key_id[:16]}; configure the key that signed it or stage the model again"
        )
    with RegionalBlobStore(settings.storage, regions=(region,)) as store:
        signed = verify_remote(store, region, model_prefix(weights.ref), public)
    if signed.statement_digest != weights.signature.signed_digest:
        raise WeightsSignatureError(f"the signature of {weights.ref} in region {region} is not the recorded one")
    if signed.files != {f.name: f.sha256 for f in weights.files}:
        raise WeightsSignatureError(f"the signed files of {weights.ref} in region {region} differ from the record")


# --------------------------------------------------------------------------------------------- flow


def _stage_rows(weights: StagedWeights) -> list[dict[str, Any]]:
    return [
        {
            "region": region,
            "files": len(weights.files),
            "bytes": weights.total_bytes,
            "location": copy.container_url,
            "verified_at": copy.verified_at.isoformat() if copy.verified_at else "",
        }
        for region, copy in weights.regions.items()
    ]


def _record(settings: Settings, result: StageResult, weights: StagedWeights | None = None) -> None:
    with CatalogStore.from_settings(settings) as catalog:
        if weights is not None:
            catalog.record_staged(weights)
        catalog.record_stage(result)


def _stage_result(
    ref: ModelRef,
    outcome: StageOutcome,
    digest: str,
    run_id: str | None,
    reason: str = "",
    payload: dict[str, Any] | None = None,
) -> StageResult:
    return StageResult(
        ref=ref,
        stage=StageName.STAGE,
        outcome=outcome,
        reason=reason,
        policy_digest=digest,
        run_id=run_id,
        payload=payload or {},
    )


def _copy_and_verify(
    overrides: dict[str, Any] | None,
    names: list[str],
    primary: str,
    fetched: FetchedWeights,
    sig_path: Path,
    signature: Signature,
) -> dict[str, RegionCopy]:
    """Fill the other regions from the primary, verify every region, then write each region's manifest."""
    ref = fetched.ref
    copies = []
    for region in names:
        if region != primary:
            with tags(f"region:{region}"):
                copies.append(replicate_region.submit(overrides, names, region, fetched, signature))
    for future in copies:
        future.result()
    checks = {}
    for region in names:
        with tags(f"region:{region}"):
            checks[region] = verify_region.submit(overrides, names, region, ref, str(sig_path))
    verified = {region: future.result() for region, future in checks.items()}
    region_copies = {}
    for region in names:
        with tags(f"region:{region}"):
            region_copies[region] = write_manifest(
                overrides, names, region, fetched, signature=signature, verified_at=verified[region]
            )
    return region_copies


def _stage(
    overrides: dict[str, Any] | None, settings: Settings, ref: ModelRef, names: list[str], work: Path
) -> StagedWeights:
    """Fetch and verify, sign, upload to the primary region, copy, verify and write the manifests."""
    files_dir, sig_path = work / "files", work / SIGNATURE_NAME
    fetched = fetch_weights(overrides, ref, str(files_dir))
    signature = sign_staged(overrides, fetched, str(files_dir), str(sig_path))
    with _store(settings, names) as store:
        primary = store.primary
    with tags(f"region:{primary}"), slot(settings, BLOB_UPLOADS):  # the task (and its retries) inside the slot
        sent = upload_primary(
            overrides, names, fetched, files_dir=str(files_dir), sig_path=str(sig_path), signature=signature
        )
    get_run_logger().info("uploaded %s to %s: %s", ref, primary, sent)
    return StagedWeights(
        ref=ref,
        files=fetched.files,
        regions=_copy_and_verify(overrides, names, primary, fetched, sig_path, signature),
        signature=signature,
        total_bytes=sum(f.size for f in fetched.files),
    )


@flow(name="stage-weights", log_prints=True)
def stage_weights(
    repo_id: str,
    revision: str | None = None,
    overrides: dict[str, Any] | None = None,
    regions: list[str] | None = None,
    force: bool = False,
) -> StagedWeights:
    """Verify, sign and stage one model revision's weights to every configured region; record it staged."""
    logger = get_run_logger()
    settings = settings_from(overrides)
    names = list(regions or settings.storage.regions)
    run_id = str(flow_run.id or "") or None
    ref = resolve_revision(overrides, repo_id, revision)
    if not force:
        with CatalogStore.from_settings(settings) as catalog:
            existing = catalog.staged(ref)
        if existing is not None and manifests_current(settings, existing, names):
            logger.info("%s is already staged in %s; nothing to do", ref, ", ".join(names))
            return existing
    work = work_dir(settings, ref)
    digest = settings.policy_digest("stage")
    try:
        weights = _stage(overrides, settings, ref, names, work)
        ok = _stage_result(ref, StageOutcome.OK, digest, run_id, payload=weights.model_dump(mode="json"))
        _record(settings, ok, weights)
    except WeightsRejectedError as exc:
        findings = {"findings": [f.model_dump(mode="json") for f in exc.findings]}
        _record(settings, _stage_result(ref, StageOutcome.REJECTED, digest, run_id, str(exc), findings))
        raise
    except (RegistryError, ValidatorError) as exc:
        _record(settings, _stage_result(ref, StageOutcome.FAILED, digest, run_id, str(exc)))
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    create_table_artifact(
        key="staged-weights",
        table=_stage_rows(weights),
        description=f"Where {ref} is staged ({len(weights.files)} files, {weights.total_bytes} bytes).",
    )
    logger.info("staged %s to %s", ref, ", ".join(names))
    return weights
