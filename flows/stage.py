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
7. write each region's manifests (last), then record `StagedWeights` in the catalog store.

A failure anywhere leaves nothing recorded as staged. Transient storage and Hub errors are retried. Nothing is
skipped on metadata: a blob is not uploaded or copied again only when its content, read back, matches.

When the catalog already records the revision as staged, the regions are checked against that record instead
(its signature and manifests, every file's presence and size; every file's sha256 with `verify=True`) and what
fails is repaired from a verified copy (flows/stage_repair.py); only when no region holds the recorded signature
any more, or with `force=True`, is the model staged again. The signature blob is named by its own sha256, so a
new staging never replaces the signature a published entry names.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from prefect import flow, get_run_logger, tags, task
from prefect.artifacts import create_table_artifact
from prefect.runtime import flow_run
from pydantic import BaseModel, ConfigDict

from flows.limits import slot
from flows.retries import only_retryable
from flows.settings import settings_from
from flows.stage_progress import ArtifactProgress, step
from registry.blob_errors import BlobIntegrityError
from registry.blobs import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    RegionalBlobStore,
    WeightsManifest,
    manifest_blob_name,
    model_prefix,
    signature_blob_name,
    signature_reference,
)
from registry.catalog import CatalogStore
from registry.errors import RegistryError
from registry.hub import hub_source
from registry.keys import KeyPair, signing_key
from registry.quotas import BLOB_UPLOADS, HUB_DOWNLOADS, HUB_TAG
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

# --------------------------------------------------------------------------------------------- retries


# --------------------------------------------------------------------------------------------- records


class FetchedWeights(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    ref: ModelRef
    files: tuple[StagedFile, ...]
    tensors: TensorReport


def blob_metadata(ref: ModelRef, sha256: str, signature: Signature) -> dict[str, str]:
    return {
        "repo": ref.repo_id,
        "revision": ref.revision,
        "sha256": sha256,
        "signature_digest": signature.signature_digest,
    }


def store_for(settings: Settings, regions: list[str]) -> RegionalBlobStore:
    return RegionalBlobStore(settings.storage, regions=tuple(regions))


def pipeline_key(settings: Settings) -> tuple[KeyPair, ec.EllipticCurvePublicKey]:
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
    retry_condition_fn=only_retryable,
    tags=[HUB_TAG],
)
def resolve_revision(overrides: dict[str, Any] | None, repo_id: str, revision: str | None) -> ModelRef:
    settings = settings_from(overrides)
    source = hub_source(settings.hub)
    try:
        return source.model_info(repo_id, revision).ref()
    finally:
        source.close()


@task(name="fetch-weights", retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=only_retryable, tags=[HUB_TAG])
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
        progress = ArtifactProgress("download", "hub", total, f"Downloading {ref}")
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
    key, public = pipeline_key(settings)
    signature = sign_weights(Path(files_dir), Path(sig_path), key)
    reference = signature_reference(settings.storage.container, fetched.ref, signature.signature_digest)
    signature = signature.model_copy(update={"reference": reference})
    signed = verify_envelope(Path(sig_path).read_bytes(), public).files
    verified = {f.name: f.sha256 for f in fetched.files}
    if signed != verified:
        raise WeightsSignatureError(
            f"the signed file set of {fetched.ref} differs from the verified one (files changed on disk "
            "while staging); stage it again"
        )
    return signature


@task(name="upload-primary", retries=3, retry_delay_seconds=[1, 4, 10], retry_condition_fn=only_retryable)
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
    with store_for(settings, regions) as store:
        region = store.primary
        total = sum(f.size for f in fetched.files)
        progress = ArtifactProgress("upload", region, total, f"Uploading {fetched.ref} to {region}")
        for staged in fetched.files:
            stats = store.upload_file(
                region,
                prefix + staged.name,
                Path(files_dir) / staged.name,
                sha256=staged.sha256,
                metadata=blob_metadata(fetched.ref, staged.sha256, signature),
                on_progress=progress.advance,
            )
            totals["blocks_sent"] += stats.blocks_sent
            totals["blocks_reused"] += stats.blocks_reused
            totals["bytes_sent"] += stats.bytes_sent
            totals["files_skipped"] += int(stats.skipped)
        store.put_bytes_if_changed(
            region,
            prefix + signature_blob_name(signature),
            Path(sig_path).read_bytes(),
            metadata=blob_metadata(fetched.ref, signature.signature_digest, signature),
        )
    return totals


@task(name="replicate-region", retries=3, retry_delay_seconds=[1, 4, 10], retry_condition_fn=only_retryable)
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
    with store_for(settings, regions) as store:
        total = sum(f.size for f in fetched.files)
        progress = ArtifactProgress("copy", target, total, f"Copying {fetched.ref} to {target}")
        sig_name = signature_blob_name(signature)
        sig_info = store.properties(store.primary, prefix + sig_name)
        if sig_info is None:
            raise BlobIntegrityError(f"the signature of {fetched.ref} is missing in {store.primary}; stage it again")
        items = [(f.name, f.sha256, f.size) for f in fetched.files]
        items.append((sig_name, signature.signature_digest, sig_info.size))
        for name, sha256, size in items:
            copied += store.copy_blob(
                store.primary,
                target,
                prefix + name,
                sha256=sha256,
                size=size,
                metadata=blob_metadata(fetched.ref, sha256, signature),
            )
            if name != sig_name:
                progress.advance(size)
    return copied


@task(name="verify-region", retries=2, retry_delay_seconds=[1, 5], retry_condition_fn=only_retryable)
def verify_region(
    overrides: dict[str, Any] | None,
    regions: list[str],
    region: str,
    ref: ModelRef,
    sig_path: str,
    signature: Signature,
) -> str:
    """Verify the region's signature by the key and every blob by streamed sha256; delete a bad blob."""
    settings = settings_from(overrides)
    _, public = pipeline_key(settings)
    with store_for(settings, regions) as store:
        try:
            verify_remote(
                store,
                region,
                model_prefix(ref),
                public,
                signature_name=signature_blob_name(signature),
                expected_signature=Path(sig_path).read_bytes(),
            )
        except BlobIntegrityError as exc:
            if exc.blob_name:
                store.delete(region, exc.blob_name)
            raise
    return datetime.now(UTC).isoformat()


@task(name="write-manifest", retries=3, retry_delay_seconds=[1, 4, 10], retry_condition_fn=only_retryable)
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
    with store_for(settings, regions) as store:
        own = put_manifests(store, region, fetched.ref, fetched.files, signature, datetime.now(UTC))
        return RegionCopy(
            region=region,
            container_url=store.blob_url(region, prefix),
            manifest_url=store.blob_url(region, own),
            verified_at=datetime.fromisoformat(verified_at),
        )


def put_manifests(
    store: RegionalBlobStore,
    region: str,
    ref: ModelRef,
    files: tuple[StagedFile, ...],
    signature: Signature,
    staged_at: datetime,
    *,
    prefix: str | None = None,
    derived_from: str = "",
    quantization: str = "",
) -> str:
    """Write the signature's own manifest and the latest one (read by runtime images) under `prefix` (default the
    model's; a derived file's names the source signature digest it was derived from); returns the own name."""
    manifest = WeightsManifest(
        repo_id=ref.repo_id,
        revision=ref.revision,
        files=files,
        signature=signature,
        region=region,
        staged_at=staged_at,
        derived_from=derived_from,
        quantization=quantization,
    ).to_bytes()
    prefix = prefix or model_prefix(ref)
    own = prefix + manifest_blob_name(signature)
    store.put_bytes(region, own, manifest)
    store.put_bytes(region, prefix + MANIFEST_NAME, manifest)
    return own


# --------------------------------------------------------------------------------------------- checks


def verify_staged(settings: Settings, weights: StagedWeights, region: str, prefix: str | None = None) -> None:
    """Verify a staged copy (under `prefix`, default the model's) before use: signature by the configured key,
    every blob by streamed sha256.

    Raises WeightsSignatureError (wrong key, altered signature) or BlobIntegrityError (altered blob).
    """
    if weights.signature is None:
        raise WeightsSignatureError(f"{weights.ref} was recorded without a signature; stage it again")
    key, public = pipeline_key(settings)
    if key.key_id != weights.signature.key_id:
        raise WeightsSignatureError(
            f"{weights.ref} was signed by key {weights.signature.key_id[:16]}, the configured key is "
            f"{key.key_id[:16]}; configure the key that signed it or stage the model again"
        )
    with RegionalBlobStore(settings.storage, regions=(region,)) as store:
        signed = verify_remote(
            store,
            region,
            prefix or model_prefix(weights.ref),
            public,
            signature_name=signature_blob_name(weights.signature),
        )
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


def record(settings: Settings, result: StageResult, weights: StagedWeights | None = None) -> None:
    with CatalogStore.from_settings(settings) as catalog:
        if weights is not None:
            catalog.record_staged(weights)
        catalog.record_stage(result)


def stage_result(
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
    step("replicated")
    checks = {}
    for region in names:
        with tags(f"region:{region}"):
            checks[region] = verify_region.submit(overrides, names, region, ref, str(sig_path), signature)
    verified = {region: future.result() for region, future in checks.items()}
    step("verified")
    region_copies = {}
    for region in names:
        with tags(f"region:{region}"):
            region_copies[region] = write_manifest(
                overrides, names, region, fetched, signature=signature, verified_at=verified[region]
            )
    step("manifests")
    return region_copies


def _stage(
    overrides: dict[str, Any] | None, settings: Settings, ref: ModelRef, names: list[str], work: Path
) -> StagedWeights:
    """Fetch and verify, sign, upload to the primary region, copy, verify and write the manifests."""
    files_dir, sig_path = work / "files", work / SIGNATURE_NAME
    fetched = fetch_weights(overrides, ref, str(files_dir))
    signature = sign_staged(overrides, fetched, str(files_dir), str(sig_path))
    step("signed")
    with store_for(settings, names) as store:
        primary = store.primary
    with tags(f"region:{primary}"), slot(settings, BLOB_UPLOADS):  # the task (and its retries) inside the slot
        sent = upload_primary(
            overrides, names, fetched, files_dir=str(files_dir), sig_path=str(sig_path), signature=signature
        )
    get_run_logger().info("uploaded %s to %s: %s", ref, primary, sent)
    step("uploaded")
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
    verify: bool = False,
) -> StagedWeights:
    """Verify, sign and stage one model revision's weights to every configured region; record it staged.

    Already staged (recorded): the regions are checked against the record (with `verify`, every blob re-hashed)
    and repaired from verified copies; `force` stages again from the Hub with a new signature.
    """
    from flows.stage_repair import check_and_repair  # it uses this module's tasks

    logger = get_run_logger()
    settings = settings_from(overrides)
    names = list(regions or settings.storage.regions)
    run_id = str(flow_run.id or "") or None
    ref = resolve_revision(overrides, repo_id, revision)
    if not force:
        with CatalogStore.from_settings(settings) as catalog:
            existing = catalog.staged(ref)
        if existing is not None:
            checked = check_and_repair(overrides, existing, names, deep=verify, run_id=run_id)
            if checked is not None:
                return checked
    work = work_dir(settings, ref)
    digest = settings.policy_digest("stage")
    try:
        weights = _stage(overrides, settings, ref, names, work)
        ok = stage_result(ref, StageOutcome.OK, digest, run_id, payload=weights.model_dump(mode="json"))
        record(settings, ok, weights)
        step("recorded")
    except WeightsRejectedError as exc:
        findings = {"findings": [f.model_dump(mode="json") for f in exc.findings]}
        record(settings, stage_result(ref, StageOutcome.REJECTED, digest, run_id, str(exc), findings))
        raise
    except (RegistryError, ValidatorError) as exc:
        record(settings, stage_result(ref, StageOutcome.FAILED, digest, run_id, str(exc)))
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
