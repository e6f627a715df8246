"""Consumer verification of one catalog entry, shared by `publish_model` (before publishing) and `curate verify`.

Every check returns a `VerificationCheck` (name, passed, detail) instead of raising, so a report lists every
problem at once. The trusted public key is an argument: the caller decides where trust comes from (the
pipeline's own key when publishing; a key the consumer pins when verifying).

- `check_entry_signature`: ECDSA over the entry's canonical JSON (registry/entries.py);
- `check_status`: the entry is published (not flagged or withdrawn; the status is outside the signature);
- `check_weights_region`: the weights' signature blob in that region is the one the entry names, it verifies
  with the key, it signs exactly the entry's file set, and every blob's sha256 re-computed by streaming matches;
- `check_image`: the pinned digest carries a valid signature by the key, and the tag the image was built under
  still points at that digest (a re-pointed tag fails);
- `check_bindings`: every published template ran on the entry's pinned image of its runtime and on the entry's
  weights signature (a llama.cpp template: or on one of the GGUF files derived from them that the entry lists in
  `derived`, each verified like the weights in every region, under its own prefix).
"""

from __future__ import annotations

import hashlib
from urllib.parse import unquote, urlsplit

from cryptography.hazmat.primitives.asymmetric import ec

from registry.blob_errors import BlobIntegrityError
from registry.blobs import RegionalBlobStore, derived_file_prefix, model_prefix, signature_blob_name
from registry.entries import PublicationError, entry_digest, verify_entry
from registry.errors import RegistryError
from registry.image_signatures import verify_image
from registry.keys import key_id
from registry.oci import ImageName, OciError
from registry.schema import CatalogEntry, EntryStatus, RegionCopy, StagedWeights
from registry.settings import StorageSettings
from registry.verification_records import VerificationCheck, VerificationReport
from validators.errors import ValidatorError
from validators.planner import GGUF_RUNTIME
from validators.weights_signing import repair_advice, verify_remote


def _plain(digest: str) -> str:
    return digest.removeprefix("sha256:")


def _ok(name: str, detail: str) -> VerificationCheck:
    return VerificationCheck(name=name, passed=True, detail=detail)


def _bad(name: str, detail: str) -> VerificationCheck:
    return VerificationCheck(name=name, passed=False, detail=detail)


def check_status(entry: CatalogEntry) -> VerificationCheck:
    """A flagged or withdrawn entry is not one to deploy, however valid its signatures."""
    if entry.status is EntryStatus.PUBLISHED:
        return _ok("status", "published")
    return _bad("status", f"{entry.status.value}: {entry.status_reason or 'no reason recorded'}")


def check_entry_signature(entry: CatalogEntry, public_key: ec.EllipticCurvePublicKey) -> VerificationCheck:
    try:
        verify_entry(entry, public_key)
    except PublicationError as exc:
        return _bad("entry-signature", str(exc))
    return _ok("entry-signature", f"signed by key {key_id(public_key)[:16]}, digest {entry_digest(entry)[:19]}")


def container_of(entry: CatalogEntry, copy: RegionCopy, prefix: str | None = None) -> str | None:
    """The blob container named by a region copy's URL (`.../<container>/<prefix>`, default the model's)."""
    prefix = prefix or model_prefix(entry.model)
    path = unquote(urlsplit(copy.container_url).path)
    if not path.endswith("/" + prefix):
        return None
    head = path[: -len(prefix)].rstrip("/")
    container = head.rsplit("/", 1)[-1]
    return container or None


def _where(entry: CatalogEntry, weights: StagedWeights) -> tuple[str, str] | None:
    """(check name stem, blob prefix) of the entry's weights or of one of its derived GGUFs (None: neither)."""
    if weights is entry.weights:
        return "weights", model_prefix(entry.model)
    if len(weights.files) != 1 or weights.ref != entry.model:
        return None
    prefix = derived_file_prefix(entry.model, weights.files[0].name)
    return (f"gguf:{weights.files[0].name}", prefix) if prefix is not None else None


def check_weights_region(
    entry: CatalogEntry,
    region: str,
    storage: StorageSettings,
    public_key: ec.EllipticCurvePublicKey,
    weights: StagedWeights | None = None,
) -> VerificationCheck:
    """The region's copy of the entry's weights (or of one derived GGUF it lists): signature blob, key, file set
    and every blob's sha256."""
    weights = weights or entry.weights
    where = _where(entry, weights)
    if where is None:
        return _bad(f"gguf:{region}", f"a derived file of {entry.model} is not named as the derive step names them")
    name, prefix = f"{where[0]}:{region}", where[1]
    copy, signature = weights.regions.get(region), weights.signature
    if copy is None or signature is None:
        return _bad(name, f"the entry lists no copy in region {region}" if copy is None else "it carries no signature")
    if region not in storage.regions:
        return _bad(
            name,
            f"no storage account configured for region {region}; add [storage.regions.{region}] (or "
            f"CURATE_STORAGE__REGIONS__{region.upper()}__*) with read access",
        )
    container = container_of(entry, copy, prefix)
    if container is None:
        return _bad(name, f"{copy.container_url} is not a weights location of {entry.model}")
    try:
        with RegionalBlobStore(
            storage.model_copy(update={"container": container}), regions=(region,), retry_total=1
        ) as store:
            if store.blob_url(region, prefix) != copy.container_url:
                return _bad(
                    name,
                    f"the entry points at {copy.container_url}, but region {region} is configured as "
                    f"{store.blob_url(region, prefix)}; configure the account the entry names",
                )
            sig_name = signature_blob_name(signature)
            try:
                raw = store.get_bytes(region, prefix + sig_name, max_bytes=16 * 1024 * 1024)
            except BlobIntegrityError:
                return _bad(name, f"the signature blob the entry names is missing in {region}; {repair_advice(prefix)}")
            if _plain(hashlib.sha256(raw).hexdigest()) != _plain(signature.signature_digest):
                return _bad(
                    name,
                    f"the signature blob in {region} is not the one the entry names (replaced); "
                    + repair_advice(prefix),
                )
            manifest = verify_remote(store, region, prefix, public_key, signature_name=sig_name, expected_signature=raw)
    except (RegistryError, ValidatorError) as exc:
        return _bad(name, str(exc))
    if manifest.statement_digest != signature.signed_digest:
        return _bad(name, f"the signature in {region} signs another statement than the entry names")
    expected = {f.name: f.sha256 for f in weights.files}
    if manifest.files != expected:
        return _bad(name, f"the signed file set in {region} differs from the entry's file list")
    return _ok(name, f"{len(expected)} files, signature and every blob's sha256 verified")


def check_image(entry: CatalogEntry, runtime: str, public_key: ec.EllipticCurvePublicKey) -> VerificationCheck:
    """The pinned image's signature by the key, and the build tag still pointing at the pinned digest."""
    name = f"image:{runtime}"
    pinned = entry.images.get(runtime, "")
    try:
        digest = ImageName.parse(pinned).digest
    except OciError as exc:
        return _bad(name, str(exc))
    if digest is None:
        return _bad(name, f"{pinned!r} is not pinned by digest")
    try:
        verify_image(pinned, public_key, expected_digest=digest)
        tag = entry.image_tags.get(runtime)
        if tag:
            verify_image(tag, public_key, expected_digest=digest)
    except RegistryError as exc:
        return _bad(name, str(exc))
    where = f", tag {tag.rsplit(':', 1)[-1]} still points at it" if tag else ""
    return _ok(name, f"{digest[:19]} signed by the trusted key{where}")


def check_bindings(entry: CatalogEntry) -> list[VerificationCheck]:
    """Each published template ran on the entry's pinned image and the entry's weights signature."""
    checks: list[VerificationCheck] = []
    signature = entry.weights.signature
    if entry.weights.ref != entry.model:
        checks.append(_bad("binding:weights", f"the weights are of {entry.weights.ref}, not {entry.model}"))
    if not entry.templates:
        checks.append(_bad("binding:templates", "the entry lists no deployment template"))
    for published in entry.templates:
        template = published.template
        name = f"binding:{template.id}"
        problems: list[str] = []
        pinned = entry.images.get(template.runtime)
        if pinned is None:
            problems.append(f"no image pinned for runtime {template.runtime}")
        elif published.image != pinned:
            problems.append(f"validated on {published.image}, but the entry pins {pinned}")
        if template.model is not None and template.model != entry.model:
            problems.append(f"validated for {template.model}, not {entry.model}")
        signed = {_plain(signature.signature_digest)} if signature is not None else set()
        if template.runtime == GGUF_RUNTIME:  # llama.cpp serves a GGUF derived from the weights, listed with them
            signed |= {_plain(d.signature.signature_digest) for d in entry.derived if d.signature is not None}
        if signature is None:
            problems.append("the entry's weights are not signed")
        elif _plain(published.weights_signature_digest) not in signed:
            problems.append("validated against another weights signature than the entry's (or its GGUF files')")
        if problems:
            checks.append(_bad(name, "; ".join(problems)))
        else:
            checks.append(_ok(name, f"ran on {template.runtime} image and the entry's weights"))
    return checks


def verify_artifacts(
    entry: CatalogEntry, storage: StorageSettings, public_key: ec.EllipticCurvePublicKey
) -> list[VerificationCheck]:
    """Weights in every region, every image, and the template bindings (everything but the entry signature)."""
    checks = [check_weights_region(entry, region, storage, public_key) for region in sorted(entry.weights.regions)]
    for derived in entry.derived:
        checks += [check_weights_region(entry, r, storage, public_key, derived) for r in sorted(derived.regions)]
    if not entry.weights.regions:
        checks.append(_bad("weights", "the entry lists no region holding its weights"))
    checks += [check_image(entry, runtime, public_key) for runtime in sorted(entry.images)]
    checks += check_bindings(entry)
    return checks


def verify_catalog_entry(
    entry: CatalogEntry,
    storage: StorageSettings,
    public_key: ec.EllipticCurvePublicKey,
    *,
    key_source: str = "",
    key_pinned: bool = False,
    extra: tuple[VerificationCheck, ...] = (),
) -> VerificationReport:
    """Every check of one published entry; `ok` only if the entry signature and every other check held."""
    checks = [
        check_entry_signature(entry, public_key),
        check_status(entry),
        *extra,
        *verify_artifacts(entry, storage, public_key),
    ]
    return VerificationReport(
        entry_id=entry.id,
        repo_id=entry.model.repo_id,
        revision=entry.model.revision,
        entry_digest=entry_digest(entry),
        key_id=key_id(public_key),
        key_source=key_source,
        key_pinned=key_pinned,
        checks=tuple(checks),
        ok=all(c.passed for c in checks),
        approvals=entry.provenance.approvals,
    )
