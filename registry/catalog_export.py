"""The catalog export: every current entry as files, its signed index, and their copy in every region.

`export_catalog(settings)` writes `entries/<id>.json`, `index.json`, `index.json.sig` and `keys/<key id>.pem`
(registry/entries.py) to `Settings.catalog_export_dir`, then uploads the files that changed to
`storage.catalog_container` in every region. An unchanged catalog writes and uploads nothing.
"""

from __future__ import annotations

import fcntl
import hashlib
import tempfile
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from registry.blobs import RegionalBlobStore
from registry.catalog import CatalogStore
from registry.entries import INDEX_SIGNATURE, PublicationError, export_entries, sign_index, verify_index
from registry.keys import KeyPair, signing_key
from registry.settings import Settings


class ExportSync(BaseModel):
    """What one export did: files written locally, blobs uploaded (region/name), and where the index is."""

    model_config = ConfigDict(frozen=True)

    directory: str
    index: str
    written: tuple[str, ...] = ()
    uploaded: tuple[str, ...] = ()


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


def _export_locked(settings: Settings, directory: Path) -> ExportSync:
    with CatalogStore.from_settings(settings) as store:
        entries = store.entries()
    key = signing_key(settings)
    with tempfile.TemporaryDirectory(prefix="catalog-export-") as scratch:
        export_entries(entries, Path(scratch), key.public_key())
        _sign_index_once(Path(scratch), directory, key)
        written = _sync(Path(scratch), directory)
    return ExportSync(
        directory=str(directory),
        index=str(directory / "index.json"),
        written=tuple(written),
        uploaded=tuple(_upload_changed(settings, directory)),
    )


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


def _upload_changed(settings: Settings, directory: Path) -> list[str]:
    """Upload every exported file whose blob differs (by sha256 metadata) to the catalog container, per region."""
    uploaded: list[str] = []
    storage = settings.storage.model_copy(update={"container": settings.storage.catalog_container})
    files = sorted(p for p in directory.rglob("*") if p.is_file() and not p.name.endswith(".tmp"))
    with RegionalBlobStore(storage) as blobs:
        for region in blobs.regions:
            for path in files:
                name = path.relative_to(directory).as_posix()
                data = path.read_bytes()
                digest = hashlib.sha256(data).hexdigest()
                info = blobs.properties(region, name)
                if info is not None and info.size == len(data) and info.metadata.get("sha256") == digest:
                    continue
                blobs.put_bytes(region, name, data, metadata={"sha256": digest})
                uploaded.append(f"{region}/{name}")
    return uploaded
