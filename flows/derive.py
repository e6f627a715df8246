"""Stage 4b flow: derive GGUF files for llama.cpp from a model's staged safetensors, sign and stage them.

For a staged model whose task the policy gives llama.cpp (`validators.planner.derives_gguf`) and when the
policy lists quantizations (`[derive] quantizations`):

1. download the staged prefix (files, this staging's manifest and signature) from the primary region; the
   llama.cpp image's shared entrypoint verifies it (signature by the pipeline's key, every sha256) before
   llama.cpp's converter reads it, inside the image with no network (builders/derive.py);
2. convert to an f16 GGUF (the reference the agreement gate compares with) and quantize it to each type;
   which types really applied (fallbacks for rows that do not fit a block) is read from llama.cpp's log;
3. sign each GGUF on its own and upload it, its content-addressed signature and its manifest (linked to the
   source weights' signature digest) under its own prefix (`registry.blobs.derived_prefix`) in every region the
   source is staged in; the source prefix and its signature are never touched;
4. record `DerivedArtifacts` as the model's `derive` stage result, keyed by (source signature digest, llama.cpp
   image digest, derive policy): the same key again skips the step. A model llama.cpp refuses (its converter or
   quantizer exits non-zero, e.g. a tokenizer it does not know) is recorded `rejected` under that key and not
   tried again until an input changes; an infrastructure failure (`failed`) is tried again next run.

Without a signed llama.cpp image (`images.runtimes` lacks `llama-cpp`, or it was not built) or a Docker Engine,
the step says why and derives nothing; the chain goes on.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from builders.derive import DerivedFile, DeriveJob, DeriveRefusedError, derive_gguf
from builders.errors import BuildersError
from flows.settings import settings_from
from flows.stage import pipeline_key, put_manifests, store_for
from flows.validate import current_image, plan_staged, recorded_derivation
from registry.blobs import (
    MANIFEST_NAME,
    derived_prefix,
    manifest_blob_name,
    model_prefix,
    prefix_signature_reference,
    signature_blob_name,
)
from registry.catalog import CatalogStore
from registry.derived_records import DerivedArtifacts, DerivedGguf
from registry.errors import RegistryError
from registry.image_signatures import verify_image
from registry.keys import public_pem
from registry.schema import (
    ModelRef,
    RuntimeImage,
    StagedFile,
    StagedWeights,
    StageName,
    StageOutcome,
    StageResult,
)
from registry.settings import Settings
from validators.errors import ValidatorError
from validators.planner import GGUF_RUNTIME, derives_gguf
from validators.weights_signing import sign_weights, verify_envelope

MAX_REASON_CHARS = 300


def derive_key(source_signature_digest: str, image_digest: str, policy_digest: str) -> str:
    """What a derivation is cached under: the same source weights, llama.cpp image and derive policy."""
    return hashlib.sha256(f"{source_signature_digest}\n{image_digest}\n{policy_digest}".encode()).hexdigest()


def derived_weights(
    settings: Settings, weights: StagedWeights | None, catalog: CatalogStore
) -> tuple[StagedWeights, ...]:
    """Each GGUF derived from this staging as a staging of its own (its file, its signature, a copy at its prefix
    in every region of the source): what a catalog entry lists for its llama.cpp templates."""
    derived = recorded_derivation(settings, weights, catalog) if weights is not None else None
    if weights is None or derived is None:
        return ()
    found = []
    with store_for(settings, sorted(weights.regions)) as store:
        for gguf in derived.ggufs:
            copies = {
                region: copy.model_copy(
                    update={"container_url": store.blob_url(region, gguf.prefix), "manifest_url": ""}
                )
                for region, copy in weights.regions.items()
            }
            files = {"files": (gguf.file,), "signature": gguf.signature, "total_bytes": gguf.file.size}
            found.append(weights.model_copy(update={**files, "regions": copies, "staged_at": derived.derived_at}))
    return tuple(found)


def _one_line(reason: str) -> str:
    """A reason as one line for the run's table: a refusal's first line with the last line of llama.cpp's log
    (the error it raised); the whole log tail stays in the stage result."""
    lines = [line.strip() for line in reason.splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else ""
    return f"{lines[0].removesuffix('; its log ends:')}: {lines[-1]}"[:MAX_REASON_CHARS]


def derive_text(result: StageResult) -> str:
    """The `derive` cell of a model's row."""
    if result.outcome is not StageOutcome.OK:
        return f"{result.outcome.value}: {_one_line(result.reason)}"
    artifacts = DerivedArtifacts.model_validate(result.payload)
    return "GGUF " + ", ".join(g.applied for g in artifacts.ggufs) + (f" ({result.reason})" if result.reason else "")


def _not_for_llama_cpp(settings: Settings, weights: StagedWeights) -> str | None:
    """Why the policy gives this model's task to no llama.cpp CPU template (None: it does); reads the staged
    config, so it runs after the cheap checks and the cache."""
    try:
        templates = plan_staged(settings, weights)
    except (RegistryError, ValidatorError) as exc:
        return f"could not plan the model: {exc}"
    task = templates[0].task if templates else None
    if task is None or not derives_gguf(settings, task):
        return f"the policy gives {task or 'this model'} to no llama.cpp CPU template"
    return None


def _download_source(settings: Settings, weights: StagedWeights, into: Path) -> None:
    """This staging's files, manifest and signature as the staged layout (the entrypoint verifies them)."""
    assert weights.signature is not None  # checked by _skip_reason
    prefix = model_prefix(weights.ref)
    with store_for(settings, [settings.storage.primary_region]) as store:
        region = store.primary
        store.download_to(region, prefix + manifest_blob_name(weights.signature), into / MANIFEST_NAME)
        signature = signature_blob_name(weights.signature)
        store.download_to(region, prefix + signature, into / signature)
        for staged in weights.files:
            store.download_to(region, prefix + staged.name, into / staged.name)


def _stage_gguf(settings: Settings, weights: StagedWeights, derived: DerivedFile, work: Path) -> DerivedGguf:
    """Sign one GGUF on its own and upload it with its signature and manifest to every region of the source."""
    assert weights.signature is not None
    ref = weights.ref
    key, public = pipeline_key(settings)
    signed_dir = work / "signed" / derived.quantization
    signed_dir.mkdir(parents=True)
    path = signed_dir / derived.path.name
    derived.path.rename(path)
    sig_path = work / "signed" / f"{derived.quantization}.sig"
    prefix = derived_prefix(ref, derived.quantization)
    signature = sign_weights(signed_dir, sig_path, key)
    signature = signature.model_copy(
        update={"reference": prefix_signature_reference(settings.storage.container, prefix, signature.signature_digest)}
    )
    digest = verify_envelope(sig_path.read_bytes(), public).files[path.name]  # the sha256 model-signing signed
    file = StagedFile(name=path.name, size=path.stat().st_size, sha256=digest)
    metadata = {"repo": ref.repo_id, "revision": ref.revision, "derived_from": weights.signature.signature_digest}
    regions = sorted(weights.regions) or [settings.storage.primary_region]
    with store_for(settings, regions) as store:
        for region in regions:
            store.upload_file(region, prefix + file.name, path, sha256=digest, metadata=metadata)
            store.put_bytes_if_changed(
                region, prefix + signature_blob_name(signature), sig_path.read_bytes(), metadata=metadata
            )
            put_manifests(
                store,
                region,
                ref,
                (file,),
                signature,
                weights.staged_at,
                prefix=prefix,
                derived_from=weights.signature.signature_digest,
                quantization=derived.quantization,
            )
    return DerivedGguf(
        quantization=derived.quantization, file=file, prefix=prefix, signature=signature, fallbacks=derived.fallbacks
    )


def _result(ref: ModelRef, outcome: StageOutcome, key: str, reason: str = "", payload: Any = None) -> StageResult:
    return StageResult(
        ref=ref,
        stage=StageName.DERIVE,
        outcome=outcome,
        reason=reason,
        policy_digest=key,
        payload=payload.model_dump(mode="json") if payload is not None else {},
    )


def _skip_reason(settings: Settings, weights: StagedWeights | None, image: object, host: str | None) -> str | None:
    if weights is None or weights.signature is None:
        return "not staged with a signature"
    if not settings.derive.quantizations:
        return "no quantizations in the policy ([derive] quantizations)"
    if image is None:
        return f"no signed {GGUF_RUNTIME} image is recorded (list it in images.runtimes and build it)"
    if not host:
        return "no Docker Engine (set DOCKER_HOST; locally `eval $(curate dev env)`)"
    return None


def _derive(settings: Settings, weights: StagedWeights, image: RuntimeImage, host: str, key: str) -> StageResult:
    """Download, derive, sign and upload; an `ok` result with `DerivedArtifacts`, or a `failed` one saying why."""
    assert weights.signature is not None  # _skip_reason checked it
    ref = weights.ref
    work = settings.data_dir / "derive" / f"{ref.org}--{ref.name}--{ref.revision}"
    shutil.rmtree(work, ignore_errors=True)
    (work / "source").mkdir(parents=True)
    try:
        _, public = pipeline_key(settings)
        digest = verify_image(image.reference, public, expected_digest=image.digest)
        _download_source(settings, weights, work / "source")
        job = DeriveJob(
            image=image.pinned,
            docker_host=host,
            source_dir=work / "source",
            out_dir=work / "out",
            ref=ref,
            public_key_pem=public_pem(public).decode(),
            quantizations=settings.derive.quantizations,
            timeout_s=settings.derive.timeout_s,
        )
        ggufs = tuple(_stage_gguf(settings, weights, made, work) for made in derive_gguf(job))
        artifacts = DerivedArtifacts(
            ref=ref,
            source_signature_digest=weights.signature.signature_digest,
            image_digest=digest,
            key=key,
            ggufs=ggufs,
        )
        return _result(ref, StageOutcome.OK, key, payload=artifacts)
    except DeriveRefusedError as exc:  # llama.cpp's answer for these inputs: kept until they change
        return _result(ref, StageOutcome.REJECTED, key, str(exc)[:4000])
    except (BuildersError, RegistryError, ValidatorError) as exc:
        return _result(ref, StageOutcome.FAILED, key, str(exc)[:4000])
    finally:
        shutil.rmtree(work, ignore_errors=True)


@flow(name="derive-artifacts", log_prints=True)
def derive_artifacts(
    repo_id: str,
    revision: str,
    overrides: dict[str, Any] | None = None,
    docker_host: str | None = None,
    run_id: str | None = None,
) -> StageResult:
    """Derive, sign and stage the policy's GGUF quantizations of one staged model. A `skipped` result (not
    recorded) says why nothing was derived; `ok` carries `DerivedArtifacts`; `rejected` (llama.cpp refused these
    inputs) and `failed` say why. `ok` and `rejected` are reused while the inputs are unchanged; whatever the
    outcome, the chain goes on (without GGUF templates unless `ok`)."""
    logger = get_run_logger()
    settings = settings_from(overrides)
    ref = ModelRef(repo_id=repo_id, revision=revision)
    host = docker_host or os.environ.get("DOCKER_HOST")
    with CatalogStore.from_settings(settings) as catalog:
        weights = catalog.staged(ref)
        image = current_image(catalog, GGUF_RUNTIME)
        why = _skip_reason(settings, weights, image, host)
        if why is not None or weights is None or weights.signature is None or image is None or host is None:
            logger.info("derive %s: nothing derived: %s", ref, why)
            return _result(ref, StageOutcome.SKIPPED, "", why or "")
        key = derive_key(weights.signature.signature_digest, image.digest, settings.policy_digest("derive"))
        cached = catalog.stage_result(ref, StageName.DERIVE, policy_digest=key)
    if cached is not None and cached.outcome in (StageOutcome.OK, StageOutcome.REJECTED):
        logger.info("derive %s: unchanged since %s", ref, cached.run_id)
        since = f"unchanged since {cached.run_id or cached.recorded_at.date()}"
        return cached.model_copy(update={"reason": f"{since}: {cached.reason}" if cached.reason else since})
    why = _not_for_llama_cpp(settings, weights)
    if why is not None:
        logger.info("derive %s: nothing derived: %s", ref, why)
        return _result(ref, StageOutcome.SKIPPED, "", why)
    result = _derive(settings, weights, image, host, key).model_copy(update={"run_id": run_id})
    with CatalogStore.from_settings(settings) as catalog:
        catalog.record_stage(result)
    logger.info("derive %s: %s", ref, derive_text(result))
    return result
