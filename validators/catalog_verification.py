"""`curate verify`'s consumer side: fetch one entry through TUF from a pinned root, then verify it end to end.

1. `tuf.ngclient` verifies the catalog's metadata chain from the pinned root (rollback, freeze, wrong keys) and
   downloads `index.json`, `index.json.sig` and `entries/<id>.json`, each checked against its signed sha256
   (registry/catalog_client.py);
2. the catalog key is the one the verified targets metadata delegates the catalog to (so pinning the root pins
   it); a `--public-key` the consumer pins as well must be that key;
3. the entry signature, the signed index (status and digest), the weights in every region, the images and the
   bindings are checked with that key (validators/verification.py).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError

from registry.catalog_client import CatalogTrustError, delegated_catalog_key, fetch_catalog_files
from registry.entries import INDEX_SIGNATURE, PublicationError, entry_digest, verify_index
from registry.keys import SigningKeyError, key_id, load_public_key
from registry.schema import CatalogEntry
from registry.settings import StorageSettings
from registry.verification_records import VerificationCheck, VerificationReport
from validators.verification import verify_catalog_entry


@dataclass(frozen=True)
class CatalogSource:
    """Where the catalog is fetched from and what is trusted: the pinned root and the client's metadata cache."""

    base_url: str
    root: bytes
    root_source: str
    root_pinned: bool
    cache_dir: Path
    query: str = ""


class UnknownEntryError(CatalogTrustError):
    """The verified catalog does not list the entry (a usage error, not a failed verification)."""


def index_check(directory: Path, entry: CatalogEntry, public_key: ec.EllipticCurvePublicKey) -> VerificationCheck:
    """The export's signed index lists this entry with its digest and its current status."""
    try:
        rows = verify_index(directory, public_key)
    except PublicationError as exc:
        return VerificationCheck(name="index", passed=False, detail=str(exc))
    row = rows.get(entry.id)
    if row is None:
        return VerificationCheck(name="index", passed=False, detail=f"the signed index does not list {entry.id}")
    problems = []
    if row.get("digest") != entry_digest(entry):
        problems.append("the signed index records another digest than the exported entry has")
    if row.get("status") != entry.status.value:
        problems.append(f"the signed index says {row.get('status')}, the exported entry says {entry.status.value}")
    if problems:
        return VerificationCheck(name="index", passed=False, detail="; ".join(problems))
    return VerificationCheck(name="index", passed=True, detail="listed in the signed index with this digest and status")


def refused(entry_id: str, error: CatalogTrustError) -> VerificationReport:
    """The report when the catalog itself did not verify: nothing it serves can be trusted."""
    check = VerificationCheck(name="catalog", passed=False, detail=f"{error.kind}: {error}")
    return VerificationReport(
        entry_id=entry_id, repo_id="", revision="", entry_digest="", key_id="", checks=(check,), ok=False
    )


def _key_checks(delegated: ec.EllipticCurvePublicKey, pinned_key: bytes | None) -> tuple[VerificationCheck, ...]:
    if pinned_key is None:
        return ()
    pinned = load_public_key(pinned_key)
    same = key_id(pinned) == key_id(delegated)
    detail = "the pinned key is the catalog key the root delegates to"
    if not same:
        detail = f"the pinned key {key_id(pinned)[:16]} is not the catalog key {key_id(delegated)[:16]} of the root"
    return (VerificationCheck(name="catalog-key", passed=same, detail=detail),)


def verify_published(
    source: CatalogSource, entry_id: str, storage: StorageSettings, *, pinned_key: bytes | None = None
) -> VerificationReport:
    """Fetch `entry_id` through TUF from `source` and verify it; a catalog that fails TUF gives a failed report.

    Raises UnknownEntryError when the (verified) catalog does not list the entry.
    """
    entry_path = f"entries/{entry_id}.json"
    try:
        files, versions = fetch_catalog_files(
            source.root,
            source.base_url,
            source.cache_dir,
            ["index.json", INDEX_SIGNATURE, entry_path],
            query=source.query,
        )
    except CatalogTrustError as exc:
        if exc.kind == "missing":
            raise UnknownEntryError("missing", f"no exported entry {entry_id!r} in the catalog; check the id") from exc
        return refused(entry_id, exc)
    try:
        entry = CatalogEntry.model_validate_json(files[entry_path])
    except ValidationError as exc:
        return refused(entry_id, CatalogTrustError("invalid", f"{entry_path} is not a catalog entry: {exc}"))
    try:
        key = load_public_key(delegated_catalog_key(source.cache_dir))
    except SigningKeyError as exc:
        return refused(entry_id, CatalogTrustError("invalid", f"the delegated catalog key is not usable: {exc}"))
    except CatalogTrustError as exc:
        return refused(entry_id, exc)
    metadata = ", ".join(f"{role} v{version}" for role, version in versions.items())
    catalog = VerificationCheck(
        name="catalog",
        passed=True,
        detail=f"TUF metadata verified from the {'pinned' if source.root_pinned else 'UNPINNED'} root ({metadata}); "
        "the index and the entry match their signed sha256",
    )
    with tempfile.TemporaryDirectory(prefix="curate-verify-") as scratch:
        for name in ("index.json", INDEX_SIGNATURE):
            (Path(scratch) / name).write_bytes(files[name])
        index = index_check(Path(scratch), entry, key)
    return verify_catalog_entry(
        entry,
        storage,
        key,
        key_source=f"the catalog role delegated by targets v{versions.get('targets', 0)} (root: {source.root_source})",
        key_pinned=source.root_pinned or pinned_key is not None,
        extra=(catalog, *_key_checks(key, pinned_key), index),
    )
