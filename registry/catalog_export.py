"""The catalog export: every current entry as files, its signed index, the TUF repository that distributes them,
and their copy in every region.

`export_catalog(settings)` writes `entries/<id>.json`, `index.json`, `index.json.sig` and `keys/<key id>.pem`
(registry/entries.py) to `Settings.catalog_export_dir`, brings the TUF metadata (`metadata/`) and targets
(`targets/`) up to date (registry/catalog_tuf.py), then uploads the files that changed to
`storage.catalog_container` in every region: targets first, the timestamp last, so a client never sees metadata
naming a file that is not there yet. An unchanged catalog whose metadata is not near expiry writes and uploads
nothing; the same call re-signs the timestamp when it nears expiry (the `refresh-catalog` deployment).
"""

from __future__ import annotations

import fcntl
import hashlib
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from registry.blobs import RegionalBlobStore
from registry.catalog import CatalogStore
from registry.catalog_tuf import METADATA_DIR, rotate_root, update_repository
from registry.entries import INDEX_SIGNATURE, PublicationError, export_entries, sign_index, verify_index
from registry.keys import KeyPair, signing_key
from registry.settings import Settings, StorageSettings


class ExportSync(BaseModel):
    """What one export did: files written locally, blobs uploaded (region/name), and where the index is."""

    model_config = ConfigDict(frozen=True)

    directory: str
    index: str
    written: tuple[str, ...] = ()
    uploaded: tuple[str, ...] = ()
    tuf_versions: dict[str, int] = {}
    tuf_warnings: tuple[str, ...] = ()


def export_catalog(settings: Settings) -> ExportSync:
    """Export every current entry and upload the changed files to the catalog container in every region.

    Serialised by an exclusive lock on `<export dir>.lock` (threads and processes): the catalog is read inside
    the lock, so a slower export never overwrites a newer one with an older snapshot.
    """
    with _export_lock(settings.catalog_export_dir):
        return _export_locked(settings, settings.catalog_export_dir)


def rotate_root_key(settings: Settings, new_root_key: Path) -> ExportSync:
    """Root key rotation: a new root version trusting `new_root_key`, signed by the current root key (from
    `publish.tuf.root_key_path`) and the new one, exported and uploaded. Afterwards point root_key_path at the
    new key; clients that pinned an older root follow the chain."""
    directory = settings.catalog_export_dir
    with _export_lock(directory):
        _restore_metadata(settings, directory)
        root = rotate_root(settings, directory, directory, new_root_key)
        uploaded = _upload_changed(settings, directory)
    return ExportSync(
        directory=str(directory),
        index=str(directory / "index.json"),
        written=(f"{METADATA_DIR}/{root.signed.version}.root.json", f"{METADATA_DIR}/root.json"),
        uploaded=tuple(uploaded),
        tuf_versions={"root": root.signed.version},
    )


@contextmanager
def _export_lock(directory: Path) -> Iterator[None]:
    directory.parent.mkdir(parents=True, exist_ok=True)
    with (directory.parent / f".{directory.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _export_locked(settings: Settings, directory: Path) -> ExportSync:
    with CatalogStore.from_settings(settings) as store:
        entries = store.entries()
    key = signing_key(settings)
    _restore_metadata(settings, directory)
    with tempfile.TemporaryDirectory(prefix="catalog-export-") as scratch:
        fresh = Path(scratch)
        export_entries(entries, fresh, key.public_key())
        _sign_index_once(fresh, directory, key)
        files = {p.relative_to(fresh).as_posix(): p.read_bytes() for p in sorted(fresh.rglob("*")) if p.is_file()}
        tuf = update_repository(settings, key, directory, fresh, files)
        written = _sync(fresh, directory)
    return ExportSync(
        directory=str(directory),
        index=str(directory / "index.json"),
        written=tuple(written),
        uploaded=tuple(_upload_changed(settings, directory)),
        tuf_versions=tuf.versions,
        tuf_warnings=tuf.warnings,
    )


def _catalog_storage(settings: Settings) -> StorageSettings:
    return settings.storage.model_copy(update={"container": settings.storage.catalog_container})


def _restore_metadata(settings: Settings, directory: Path) -> None:
    """A new machine (or a lost export directory) continues the TUF versions the catalog container serves: starting
    over at version 1 would look like a rollback to every client."""
    if (directory / METADATA_DIR / "root.json").is_file():
        return
    with RegionalBlobStore(_catalog_storage(settings)) as blobs:
        region = blobs.primary
        for name in blobs.list_names(region, METADATA_DIR + "/"):
            blobs.download_to(region, name, directory / name)


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


def _upload_order(name: str) -> tuple[int, str]:
    """Targets and plain files first, then metadata, the timestamp last."""
    if name == f"{METADATA_DIR}/timestamp.json":
        return 2, name
    return (1 if name.startswith(METADATA_DIR + "/") else 0), name


def _upload_changed(settings: Settings, directory: Path) -> list[str]:
    """Upload every exported file whose blob differs (read back and compared) to the catalog container, per region."""
    uploaded: list[str] = []
    files = [p for p in directory.rglob("*") if p.is_file() and not p.name.endswith(".tmp")]
    names = sorted((p.relative_to(directory).as_posix() for p in files), key=_upload_order)
    with RegionalBlobStore(_catalog_storage(settings)) as blobs:
        for region in blobs.regions:
            for name in names:
                data = (directory / name).read_bytes()
                digest = hashlib.sha256(data).hexdigest()
                if blobs.put_bytes_if_changed(region, name, data, metadata={"sha256": digest}):
                    uploaded.append(f"{region}/{name}")
    return uploaded
