"""Audit of staged weights in one region against what the catalog records: what is wrong, blob by blob.

`audit_region` never trusts what a writer of the container could have set (blob metadata, Content-MD5): the
signature and the manifests are read and compared with the record, and with `deep=True` every file blob is
re-hashed by streaming it. Without `deep` the files are checked by presence and size only, which is what the
stage flow's "already staged" decision needs on every run; the weekly audit and `curate stage --verify` re-hash.

The result is a list of `BlobProblem`s; repairing them (from a verified copy in another region, or the Hub at
the pinned revision) is the stage flow's job (flows/stage_repair.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum

from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError

from registry.blob_errors import BlobIntegrityError
from registry.blobs import (
    MANIFEST_NAME,
    RegionalBlobStore,
    WeightsManifest,
    is_reserved,
    manifest_blob_name,
    model_prefix,
    signature_blob_name,
)
from registry.schema import StagedWeights
from validators.weights_signing import WeightsSignatureError, verify_envelope

_MAX_SMALL = 16 * 1024 * 1024


class Problem(StrEnum):
    MISSING = "missing"
    SIZE = "size"
    CONTENT = "content"
    EXTRA = "extra"
    SIGNATURE = "signature"
    MANIFEST = "manifest"


@dataclass(frozen=True)
class BlobProblem:
    """One blob of one region that is not what the record says (`name` is relative to the model prefix)."""

    region: str
    name: str
    problem: Problem
    detail: str


@dataclass
class RegionAudit:
    region: str
    problems: list[BlobProblem] = field(default_factory=list)
    verified: set[str] = field(default_factory=set)
    bytes_read: int = 0
    complete: bool = True

    def bad(self, name: str, problem: Problem, detail: str) -> None:
        self.problems.append(BlobProblem(self.region, name, problem, detail))

    @property
    def signature_ok(self) -> bool:
        return not any(p.problem is Problem.SIGNATURE for p in self.problems)

    def file_ok(self, name: str) -> bool:
        return not any(p.name == name for p in self.problems)


def _hex(digest: str) -> str:
    return digest.removeprefix("sha256:")


def _small(store: RegionalBlobStore, region: str, name: str) -> bytes | None:
    try:
        return store.get_bytes(region, name, max_bytes=_MAX_SMALL)
    except BlobIntegrityError:
        return None


def check_signature(
    store: RegionalBlobStore,
    audit: RegionAudit,
    weights: StagedWeights,
    public_key: ec.EllipticCurvePublicKey | None,
    prefix: str | None = None,
) -> bytes | None:
    """The region's copy of the recorded signature: its bytes if it is exactly the recorded one and signs the
    recorded file set with `public_key` (None: a key no longer configured made it; its digest alone is then
    compared, the record itself being signed), else None (and the problem is noted)."""
    signature = weights.signature
    assert signature is not None
    name = signature_blob_name(signature)
    data = _small(store, audit.region, (prefix or model_prefix(weights.ref)) + name)
    if data is None:
        audit.bad(name, Problem.SIGNATURE, "the recorded signature blob is missing")
        return None
    audit.bytes_read += len(data)
    if hashlib.sha256(data).hexdigest() != _hex(signature.signature_digest):
        audit.bad(name, Problem.SIGNATURE, "the signature blob is not the recorded one (its sha256 differs)")
        return None
    if public_key is None:
        return data
    try:
        signed = verify_envelope(data, public_key)
    except WeightsSignatureError as exc:
        audit.bad(name, Problem.SIGNATURE, str(exc))
        return None
    if signed.files != {f.name: f.sha256 for f in weights.files}:
        audit.bad(name, Problem.SIGNATURE, "the signature signs another file set than the record lists")
        return None
    return data


def check_manifests(
    store: RegionalBlobStore, audit: RegionAudit, weights: StagedWeights, prefix: str | None = None
) -> None:
    """The signature's own manifest matches the record; the latest manifest (read by runtime images) lists the
    record's files."""
    assert weights.signature is not None
    prefix = prefix or model_prefix(weights.ref)
    for name in dict.fromkeys((manifest_blob_name(weights.signature), MANIFEST_NAME)):
        data = _small(store, audit.region, prefix + name)
        if data is None:
            audit.bad(name, Problem.MANIFEST, "missing")
            continue
        try:
            manifest = WeightsManifest.model_validate_json(data)
        except ValidationError:
            audit.bad(name, Problem.MANIFEST, "not a weights manifest")
            continue
        own = name != MANIFEST_NAME
        if manifest.files != weights.files or (own and manifest.signature != weights.signature):
            audit.bad(name, Problem.MANIFEST, "does not list the recorded files and signature")


def audit_region(
    store: RegionalBlobStore,
    region: str,
    weights: StagedWeights,
    public_key: ec.EllipticCurvePublicKey | None,
    *,
    deep: bool,
    byte_budget: int | None = None,
    prefix: str | None = None,
) -> RegionAudit:
    """Every problem of `region`'s copy of `weights` under `prefix` (default the model's; a derived GGUF has its
    own). With `deep`, file blobs are re-hashed while `byte_budget` (bytes to read, None = unbounded) lasts;
    `complete` is False when the budget ran out first."""
    audit = RegionAudit(region)
    if weights.signature is None:
        audit.bad("", Problem.SIGNATURE, "the record has no signature")
        return audit
    prefix = prefix or model_prefix(weights.ref)
    check_signature(store, audit, weights, public_key, prefix)
    check_manifests(store, audit, weights, prefix)
    expected = {f.name: f for f in weights.files}
    present = {n[len(prefix) :] for n in store.list_names(region, prefix)}
    for name in sorted(n for n in present if not is_reserved(n) and n not in expected):
        audit.bad(name, Problem.EXTRA, "not in the signed file set")
    for name, staged in sorted(expected.items()):
        info = store.properties(region, prefix + name)
        if info is None:
            audit.bad(name, Problem.MISSING, "missing")
        elif info.size != staged.size or info.copy_status not in (None, "success"):
            audit.bad(name, Problem.SIZE, f"{info.size} bytes (copy {info.copy_status}), expected {staged.size}")
        elif deep:
            if byte_budget is not None and audit.bytes_read + staged.size > byte_budget:
                audit.complete = False
                continue
            actual, length = store.sha256_of(region, prefix + name)
            audit.bytes_read += length
            if actual != staged.sha256:
                audit.bad(name, Problem.CONTENT, "its content does not match the signed sha256")
            else:
                audit.verified.add(name)
    return audit
