"""The catalog export as a TUF repository, fetched with `tuf.ngclient` from a pinned root over the regional
`catalog` containers (Azurite over HTTP): a good export verifies; a replayed older export (rollback), an expired
timestamp (freeze), a target that does not match its hash and metadata signed by a wrong key are each refused;
the timestamp is re-signed before it expires; root key rotation (new root signed by the old) is followed.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tuf.api.metadata import Metadata, Timestamp

from devstack.azurite import AzuriteStack
from registry.blob_sas import container_read_url
from registry.blobs import RegionalBlobStore
from registry.catalog import CatalogStore
from registry.catalog_client import CatalogTrustError, delegated_catalog_key, fetch_catalog_files
from registry.catalog_export import export_catalog, rotate_root_key
from registry.catalog_tuf import CATALOG_ROLE, TufRepositoryError, signer_from_pem
from registry.keys import generate_private_pem, public_pem, signing_key
from registry.schema import EntryStatus
from registry.settings import Settings, load_settings
from tests.fixtures.azurite import fresh_catalog_container, fresh_container
from tests.fixtures.catalog import sample_entry, sample_ref

pytestmark = pytest.mark.integration


def _settings(tmp_path: Path, azurite: AzuriteStack, **tuf: Any) -> Settings:
    storage = {"container": fresh_container(), "catalog_container": fresh_catalog_container()}
    return load_settings(
        data_dir=tmp_path / "data",
        storage={**storage, "primary_region": "eastus", **azurite.storage_overrides()},
        publish={"tuf": tuf},
    )


def _publish(settings: Settings, seed: int) -> str:
    entry = sample_entry(sample_ref("acme/tiny-chat", seed=seed))
    with CatalogStore.from_settings(settings) as store:
        store.publish(entry)
    export_catalog(settings)
    return entry.id


class Client:
    """A consumer: its own cache (kept between fetches), the pinned root, one region's catalog container."""

    def __init__(self, settings: Settings, tmp_path: Path, region: str = "westeurope") -> None:
        self.settings = settings
        self.root = (settings.catalog_export_dir / "metadata" / "1.root.json").read_bytes()
        self.cache = tmp_path / f"client-{region}"
        storage = settings.storage.model_copy(update={"container": settings.storage.catalog_container})
        with RegionalBlobStore(storage) as blobs:
            url = container_read_url(blobs, region, valid_for=timedelta(hours=1))
        self.base, _, self.query = url.partition("?")

    def fetch(self, *paths: str) -> tuple[dict[str, bytes], dict[str, int]]:
        return fetch_catalog_files(self.root, self.base, self.cache, list(paths), query=self.query)


def _blobs(settings: Settings) -> RegionalBlobStore:
    return RegionalBlobStore(settings.storage.model_copy(update={"container": settings.storage.catalog_container}))


def test_export_is_a_tuf_repository_a_pinned_client_verifies(azurite: AzuriteStack, tmp_path: Path) -> None:
    settings = _settings(tmp_path, azurite)
    entry_id = _publish(settings, seed=1)
    client = Client(settings, tmp_path)
    files, versions = client.fetch("index.json", f"entries/{entry_id}.json")
    export = settings.catalog_export_dir
    assert files["index.json"] == (export / "index.json").read_bytes()
    assert json.loads(files[f"entries/{entry_id}.json"])["id"] == entry_id
    assert versions == {"root": 1, "timestamp": 1, "snapshot": 1, "targets": 1, CATALOG_ROLE: 1}
    # The catalog role is delegated to the pipeline's catalog key: the key that signs entries and the index.
    assert delegated_catalog_key(client.cache) == public_pem(signing_key(settings).public_key())
    # An unchanged export writes and uploads nothing, and keeps every version.
    again = export_catalog(settings)
    assert again.written == () and again.uploaded == ()
    assert again.tuf_versions == versions
    # A changed status: new catalog, snapshot and timestamp versions; the client follows.
    with CatalogStore.from_settings(settings) as store:
        store.set_entry_status(entry_id, EntryStatus.FLAGGED, "needs review")
    changed = export_catalog(settings)
    assert changed.tuf_versions[CATALOG_ROLE] == 2 and changed.tuf_versions["timestamp"] == 2
    assert changed.uploaded[-1].endswith("metadata/timestamp.json")  # the timestamp goes last
    files, versions = client.fetch("index.json")
    assert json.loads(files["index.json"])["entries"][0]["status"] == "flagged"
    assert versions["timestamp"] == 2


def test_replayed_older_export_is_refused_as_a_rollback(azurite: AzuriteStack, tmp_path: Path) -> None:
    settings = _settings(tmp_path, azurite)
    entry_id = _publish(settings, seed=2)
    old = {
        name: (settings.catalog_export_dir / "metadata" / name).read_bytes()
        for name in ("timestamp.json", "1.snapshot.json")
    }
    with CatalogStore.from_settings(settings) as store:
        store.set_entry_status(entry_id, EntryStatus.WITHDRAWN, "repository gone")
    export_catalog(settings)
    client = Client(settings, tmp_path)
    files, _ = client.fetch("index.json")
    assert json.loads(files["index.json"])["entries"][0]["status"] == "withdrawn"
    with _blobs(settings) as blobs:  # an attacker serves the old, validly signed export again
        blobs.put_bytes("westeurope", "metadata/timestamp.json", old["timestamp.json"])
    with pytest.raises(CatalogTrustError) as caught:
        client.fetch("index.json")
    assert caught.value.kind == "rollback" and "older" in str(caught.value)


def test_expired_timestamp_is_refused_as_a_freeze_and_refreshed_before_it_expires(
    azurite: AzuriteStack, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, azurite, timestamp_expiry_days=1)
    _publish(settings, seed=3)
    path = settings.catalog_export_dir / "metadata" / "timestamp.json"
    # A timestamp that expired an hour ago, validly signed by the timestamp key: a frozen repository.
    md = Metadata[Timestamp].from_bytes(path.read_bytes())
    md.signed.expires = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    md.signed.version += 1
    md.sign(signer_from_pem((settings.data_dir / "keys" / "tuf" / "timestamp.pem").read_bytes()))
    with _blobs(settings) as blobs:
        blobs.put_bytes("westeurope", "metadata/timestamp.json", md.to_bytes())
    with pytest.raises(CatalogTrustError) as caught:
        Client(settings, tmp_path).fetch("index.json")
    assert caught.value.kind == "freeze"
    # The export (what `refresh-catalog` runs daily) re-signs a timestamp with less than half its life left.
    path.write_bytes(md.to_bytes())
    refreshed = export_catalog(settings)
    assert "metadata/timestamp.json" in refreshed.written
    assert refreshed.tuf_versions["timestamp"] == md.signed.version + 1
    _, versions = Client(settings, tmp_path, region="southeastasia").fetch("index.json")
    assert versions["timestamp"] == md.signed.version + 1


def test_target_that_does_not_match_its_hash_is_refused(azurite: AzuriteStack, tmp_path: Path) -> None:
    settings = _settings(tmp_path, azurite)
    entry_id = _publish(settings, seed=4)
    export = settings.catalog_export_dir
    stored = next((export / "targets" / "entries").glob(f"*.{entry_id}.json"))
    name = stored.relative_to(export).as_posix()
    data = json.loads(stored.read_text())
    data["status"] = "published"
    data["license"]["spdx"] = "MIT"
    with _blobs(settings) as blobs:
        blobs.put_bytes("westeurope", name, json.dumps(data).encode())
    with pytest.raises(CatalogTrustError) as caught:
        Client(settings, tmp_path).fetch(f"entries/{entry_id}.json")
    assert caught.value.kind == "target"


def test_metadata_signed_by_a_wrong_key_is_refused(azurite: AzuriteStack, tmp_path: Path) -> None:
    settings = _settings(tmp_path, azurite)
    _publish(settings, seed=5)
    path = settings.catalog_export_dir / "metadata" / "timestamp.json"
    md = Metadata[Timestamp].from_bytes(path.read_bytes())
    md.signed.version += 1
    md.sign(signer_from_pem(generate_private_pem()))  # not the timestamp key the root names
    with _blobs(settings) as blobs:
        blobs.put_bytes("westeurope", "metadata/timestamp.json", md.to_bytes())
    with pytest.raises(CatalogTrustError) as caught:
        Client(settings, tmp_path).fetch("index.json")
    assert caught.value.kind == "signature"


def test_root_key_rotation_is_followed_from_the_old_pinned_root(azurite: AzuriteStack, tmp_path: Path) -> None:
    settings = _settings(tmp_path, azurite)
    _publish(settings, seed=6)
    client = Client(settings, tmp_path)  # pins 1.root.json
    client.fetch("index.json")
    new_key = tmp_path / "new-root.pem"
    new_key.write_bytes(generate_private_pem())
    export = settings.catalog_export_dir
    rotated = rotate_root_key(settings, new_key)
    assert rotated.tuf_versions == {"root": 2} and "westeurope/metadata/2.root.json" in rotated.uploaded
    root = Metadata.from_bytes((export / "metadata" / "2.root.json").read_bytes())
    assert len(root.signatures) == 2  # signed by the old root key and the new one
    _, versions = client.fetch("index.json")
    assert versions["root"] == 2
    # From now on the new key is the configured root key: exports go on under root v2.
    after = load_settings(**{**_overrides(settings), "publish": {"tuf": {"root_key_path": str(new_key)}}})
    assert export_catalog(after).tuf_versions["root"] == 2
    # A third root signed only by a key the current root does not trust is refused.
    forged = Metadata.from_bytes((export / "metadata" / "2.root.json").read_bytes())
    forged.signed.version = 3
    forged.signatures.clear()
    forged.sign(signer_from_pem(generate_private_pem()))
    with _blobs(settings) as blobs:
        blobs.put_bytes("westeurope", "metadata/3.root.json", forged.to_bytes())
    with pytest.raises(CatalogTrustError) as caught:
        Client(settings, tmp_path).fetch("index.json")
    assert caught.value.kind == "signature"


def test_offline_root_and_targets_keys_are_needed_only_to_create_or_renew(
    azurite: AzuriteStack, tmp_path: Path
) -> None:
    offline = {"root_key_path": str(tmp_path / "root.pem"), "targets_key_path": str(tmp_path / "targets.pem")}
    for path in offline.values():
        Path(path).write_bytes(generate_private_pem())
    settings = _settings(tmp_path, azurite, **offline)
    entry_id = _publish(settings, seed=7)  # a new repository: root and targets signed with the mounted keys
    for path in offline.values():
        Path(path).unlink()  # taken offline
    with CatalogStore.from_settings(settings) as store:
        store.set_entry_status(entry_id, EntryStatus.FLAGGED, "needs review")
    weekly = export_catalog(settings)  # the weekly run needs only the online keys and the catalog key
    assert weekly.tuf_versions["targets"] == 1 and weekly.tuf_versions[CATALOG_ROLE] == 2
    files, _ = Client(settings, tmp_path).fetch("index.json")
    assert json.loads(files["index.json"])["entries"][0]["status"] == "flagged"
    # Targets nearing expiry (here: its lifetime raised) with its key offline: kept while valid, and said so.
    tuf = {**offline, "targets_expiry_days": 1000}
    later = export_catalog(load_settings(**{**_overrides(settings), "publish": {"tuf": tuf}}))
    assert later.tuf_versions["targets"] == 1
    assert any("targets metadata expires" in w for w in later.tuf_warnings)
    # A new repository cannot be made without them.
    fresh = _settings(tmp_path / "fresh", azurite, **offline)
    with pytest.raises(TufRepositoryError, match="root_key_path"):
        export_catalog(fresh)


def _overrides(settings: Settings) -> dict[str, Any]:
    return {"data_dir": settings.data_dir, "storage": settings.storage.model_dump(mode="python")}
