"""Catalog entries: the publication gate, the entry itself, its signature and its export.

Nothing is published unless screening accepted the model at this revision, its weights are staged and
verified in every region, every image a listed template uses is scanned (gate passed) and signed, and every
listed template passed validation against those image and weights digests. `publication_gate` says why not,
in sentences; `build_entry` refuses to build an entry the gate refuses.

The entry signature is an ECDSA P-256 signature over the entry's canonical JSON (sorted keys, no whitespace,
`signature` and `status`/`status_reason` excluded, so flagging an entry does not invalidate what was signed).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from registry.errors import RegistryError
from registry.keys import KeyPair, key_id, public_pem, verify_signature
from registry.schema import (
    CatalogEntry,
    LicenseReference,
    ModelRef,
    Provenance,
    PublishedTemplate,
    RuntimeImage,
    ScreeningReport,
    Signature,
    StagedWeights,
    ValidationResult,
    ValidationVerdict,
    Verdict,
    model_slug,
)

_UNSIGNED_FIELDS = {"signature", "status", "status_reason"}


class PublicationError(RegistryError):
    """An entry cannot be published or verified; the message lists every unmet gate."""


@dataclass(frozen=True)
class GateInputs:
    ref: ModelRef
    screening: ScreeningReport | None
    weights: StagedWeights | None
    images: Mapping[str, RuntimeImage]
    validations: Sequence[ValidationResult]
    required_regions: tuple[str, ...]


def entry_id(repo_id: str) -> str:
    return model_slug(repo_id)


def passed_templates(inputs: GateInputs) -> list[ValidationResult]:
    """Validation results that may be listed: passed, on a scanned+signed image, on these weights."""
    listed: list[ValidationResult] = []
    for result in inputs.validations:
        if result.verdict is not ValidationVerdict.PASSED:
            continue
        image = inputs.images.get(result.template.runtime)
        if image is None or image.digest != result.image_digest:
            continue
        if inputs.weights is None or inputs.weights.signature is None:
            continue
        if result.weights_signature_digest != inputs.weights.signature.signature_digest:
            continue
        listed.append(result)
    return listed


def publication_gate(inputs: GateInputs) -> list[str]:
    """Every reason this model may not be published now (empty: it may)."""
    reasons: list[str] = []
    report = inputs.screening
    if report is None or report.ref != inputs.ref:
        reasons.append("not screened at this revision")
    elif report.verdict is not Verdict.ACCEPTED:
        reasons.append(f"screening verdict is {report.verdict.value}, not accepted")
    weights = inputs.weights
    if weights is None or weights.ref != inputs.ref:
        reasons.append("weights not staged at this revision")
    else:
        if weights.signature is None:
            reasons.append("staged weights are not signed")
        missing = [r for r in inputs.required_regions if r not in weights.regions]
        if missing:
            reasons.append(f"weights missing in region(s) {', '.join(missing)}")
        unverified = [r for r, copy in weights.regions.items() if copy.verified_at is None]
        if unverified:
            reasons.append(f"weights not verified in region(s) {', '.join(sorted(unverified))}")
    listed = passed_templates(inputs)
    if not listed:
        reasons.append("no deployment template passed validation on a signed, scanned image")
    for result in listed:
        image = inputs.images[result.template.runtime]
        if image.scan is None or not image.scan.passed:
            reasons.append(f"image {image.reference} has not passed its vulnerability gate")
        if image.signature is None:
            reasons.append(f"image {image.reference} is not signed")
    return reasons


def build_entry(
    inputs: GateInputs,
    *,
    task: str,
    license_reference: LicenseReference,
    provenance: Provenance,
) -> CatalogEntry:
    reasons = publication_gate(inputs)
    if reasons:
        raise PublicationError(f"{inputs.ref} cannot be published: " + "; ".join(reasons))
    if inputs.weights is None:  # the gate already refused this; keeps the type checker informed
        raise PublicationError(f"{inputs.ref} cannot be published: weights not staged")
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
    return CatalogEntry(
        id=entry_id(inputs.ref.repo_id),
        model=inputs.ref,
        license=license_reference,
        task=task,
        templates=templates,
        weights=inputs.weights,
        images={runtime: inputs.images[runtime].pinned for runtime in sorted(used)},
        image_tags={runtime: inputs.images[runtime].reference for runtime in sorted(used)},
        provenance=provenance,
    )


# ---------------------------------------------------------------------------------------------- signing


def canonical_bytes(entry: CatalogEntry) -> bytes:
    data = entry.model_dump(mode="json", exclude=_UNSIGNED_FIELDS)
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_digest(entry: CatalogEntry) -> str:
    return "sha256:" + hashlib.sha256(canonical_bytes(entry)).hexdigest()


def sign_entry(entry: CatalogEntry, key: KeyPair) -> CatalogEntry:
    payload = canonical_bytes(entry)
    raw = key.sign(payload)
    signature = Signature(
        key_id=key.key_id,
        signed_digest=entry_digest(entry),
        reference=base64.b64encode(raw).decode(),
        signature_digest="sha256:" + hashlib.sha256(raw).hexdigest(),
    )
    return entry.model_copy(update={"signature": signature})


def verify_entry(entry: CatalogEntry, public_key: ec.EllipticCurvePublicKey) -> None:
    """Raise PublicationError unless `entry` carries a valid signature by `public_key` over its content."""
    signature = entry.signature
    if signature is None:
        raise PublicationError(f"entry {entry.id} is not signed")
    if signature.key_id != key_id(public_key):
        raise PublicationError(f"entry {entry.id} was signed by key {signature.key_id[:12]}, not the trusted key")
    if signature.signed_digest != entry_digest(entry):
        raise PublicationError(f"entry {entry.id} was changed after it was signed (digest mismatch)")
    try:
        raw = base64.b64decode(signature.reference, validate=True)
    except ValueError as exc:
        raise PublicationError(f"entry {entry.id} has a malformed signature") from exc
    if not verify_signature(public_key, raw, canonical_bytes(entry)):
        raise PublicationError(f"entry {entry.id}: the signature does not verify")


# ---------------------------------------------------------------------------------------------- export


def export_entries(entries: Iterable[CatalogEntry], directory: Path, public_key: ec.EllipticCurvePublicKey) -> Path:
    """Write `entries/<id>.json`, `index.json` and `keys/<key id>.pem`; return the index path."""
    (directory / "entries").mkdir(parents=True, exist_ok=True)
    (directory / "keys").mkdir(parents=True, exist_ok=True)
    index: list[dict[str, object]] = []
    for entry in sorted(entries, key=lambda e: e.id):
        path = directory / "entries" / f"{entry.id}.json"
        path.write_text(entry.model_dump_json(indent=2))
        index.append(
            {
                "id": entry.id,
                "repo_id": entry.model.repo_id,
                "revision": entry.model.revision,
                "status": entry.status.value,
                "templates": [t.template.id for t in entry.templates],
                "digest": entry_digest(entry),
                "path": f"entries/{entry.id}.json",
            }
        )
    (directory / "keys" / f"{key_id(public_key)}.pem").write_bytes(public_pem(public_key))
    index_path = directory / "index.json"
    index_path.write_text(json.dumps({"schema_version": 1, "entries": index}, indent=2))
    return index_path


def load_exported_entry(directory: Path, entry_id_: str) -> CatalogEntry:
    path = directory / "entries" / f"{entry_id_}.json"
    if not path.is_file():
        raise PublicationError(f"no exported entry {entry_id_!r} under {directory}; run `curate run` or check the id")
    return CatalogEntry.model_validate_json(path.read_bytes())


# ---------------------------------------------------------------------------------------------- index signature

INDEX_SIGNATURE = "index.json.sig"


def sign_index(directory: Path, key: KeyPair) -> Path:
    """Sign `index.json` (its exact bytes) into `index.json.sig` (base64 ECDSA P-256).

    The entry signature leaves the status out (flagging must not invalidate it); the signed index is what
    binds each entry's current status and digest to the key, so a withdrawn entry cannot be relabelled.
    """
    index = directory / "index.json"
    path = directory / INDEX_SIGNATURE
    path.write_text(base64.b64encode(key.sign(index.read_bytes())).decode() + "\n")
    return path


def verify_index(directory: Path, public_key: ec.EllipticCurvePublicKey) -> dict[str, dict[str, object]]:
    """The signed index's rows by entry id; raises PublicationError when missing, unsigned or altered."""
    index, signature = directory / "index.json", directory / INDEX_SIGNATURE
    try:
        data = index.read_bytes()
        raw = base64.b64decode(signature.read_text().strip(), validate=True)
    except OSError as exc:
        raise PublicationError(f"cannot read the signed index in {directory}: {exc}; re-export the catalog") from exc
    except ValueError as exc:
        raise PublicationError(f"{signature} is not a base64 signature") from exc
    if not verify_signature(public_key, raw, data):
        raise PublicationError(f"{index.name} was changed after it was signed, or signed with another key")
    try:
        rows = json.loads(data)["entries"]
        return {str(row["id"]): dict(row) for row in rows}
    except (ValueError, KeyError, TypeError) as exc:
        raise PublicationError(f"{index} is not a catalog index: {exc}") from exc
