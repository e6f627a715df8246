"""The stage-weights flow end to end: Hub test server, verify, sign, Azurite with three regional accounts.

The integration test stages the real SmolLM2-135M-Instruct sample (269 MB of bf16 safetensors) and verifies
every blob's sha256 and the model-signing signature from each region's own copy. The fault tests check that a
forged blob is replaced, a wrong LFS hash, a wrong signing key and an unreachable storage account each end in a clear
typed error with nothing recorded as staged. (The killed-upload resume test: tests/registry/test_blobs.py.)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from typer.testing import CliRunner

from devstack.azurite import AzuriteStack, connection_string, dev_account_key
from devstack.hub_server import HubServer
from devstack.net import free_port
from devstack.repostore import RepoStore
from devstack.samples import SampleSet
from flows.cli.app import app
from flows.stage import stage_weights, verify_staged
from flows.stage_progress import ProgressEvent, add_progress_listener
from registry.blob_errors import StorageUnavailableError
from registry.blobs import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    RegionalBlobStore,
    WeightsManifest,
    manifest_blob_name,
    model_prefix,
    signature_blob_name,
)
from registry.catalog import CatalogStore
from registry.keys import SigningKeyError, signing_key
from registry.schema import ModelRef, StageName, StageOutcome
from registry.settings import Settings, load_settings
from tests.fixtures.hub import build_repo, tiny_safetensors
from validators.weights import WeightsRejectedError
from validators.weights_signing import WeightsSignatureError, verify_weights

SMOL = "HuggingFaceTB/SmolLM2-135M-Instruct"
TINY = "curation-samples/tiny-llama-chat"
REGIONS = ("eastus", "westeurope", "southeastasia")

pytestmark = pytest.mark.integration


@pytest.fixture
def stage_env(
    prefect_harness: None,
    azurite_env: Callable[[], dict[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[[HubServer], dict[str, Any]]:
    """Point a test's flows at a Hub server, its own data dir (catalog, key) and its own container."""
    monkeypatch.setenv("CURATE_DATA_DIR", str(tmp_path / "data"))

    def configure(hub: HubServer) -> dict[str, Any]:
        monkeypatch.setenv("CURATE_HUB__ENDPOINT", hub.url)
        return {"storage": azurite_env(), "hub": {"max_retries": 0}}

    return configure


def _settings(overrides: dict[str, Any]) -> Settings:
    return load_settings(**overrides)


def _nothing_staged(settings: Settings, ref: ModelRef, outcome: StageOutcome) -> None:
    with CatalogStore.from_settings(settings) as catalog:
        assert catalog.staged(ref) is None
        result = catalog.stage_result(ref, StageName.STAGE)
    assert result is not None and result.outcome is outcome
    with RegionalBlobStore(settings.storage) as store:
        for region in store.regions:
            assert store.properties(region, model_prefix(ref) + MANIFEST_NAME) is None


def test_stage_real_sample_to_three_regions_and_verify_each_copy(
    sample_set: SampleSet,
    hub_factory: Callable[..., HubServer],
    stage_env: Callable[[HubServer], dict[str, Any]],
    tmp_path: Path,
) -> None:
    overrides = stage_env(hub_factory(sample_set.store()))
    sample = sample_set.get(SMOL)
    weights = stage_weights(SMOL, overrides=overrides)
    settings = _settings(overrides)
    ref = ModelRef(repo_id=SMOL, revision=sample.revision)
    assert weights.ref == ref
    assert set(weights.regions) == set(REGIONS)
    names = {f.name for f in weights.files}
    assert {"model.safetensors", "config.json", "tokenizer.json", "LICENSE"} <= names
    assert weights.total_bytes > 250_000_000
    with CatalogStore.from_settings(settings) as catalog:
        assert catalog.staged(ref) == weights
    key = signing_key(settings)
    assert weights.signature is not None and weights.signature.key_id == key.key_id
    prefix = model_prefix(ref)
    with RegionalBlobStore(settings.storage) as store:
        for region in REGIONS:
            local = tmp_path / "copies" / region
            for staged in weights.files:
                store.download_to(region, prefix + staged.name, local / "files" / staged.name)
                data_sha = hashlib.sha256((local / "files" / staged.name).read_bytes()).hexdigest()
                assert data_sha == staged.sha256, (region, staged.name)
                info = store.properties(region, prefix + staged.name)
                assert info is not None
                assert info.metadata == {
                    "repo": SMOL,
                    "revision": ref.revision,
                    "sha256": staged.sha256,
                    "signature_digest": weights.signature.signature_digest,
                }
            store.download_to(region, prefix + signature_blob_name(weights.signature), local / SIGNATURE_NAME)
            signed = verify_weights(local / "files", local / SIGNATURE_NAME, key.public_path)
            assert signed.files == {f.name: f.sha256 for f in weights.files}
            manifest = WeightsManifest.model_validate_json(store.get_bytes(region, prefix + MANIFEST_NAME))
            assert manifest.files == weights.files and manifest.region == region
            assert weights.regions[region].manifest_url.endswith(
                f"/{region}/{settings.storage.container}/{prefix}{manifest_blob_name(weights.signature)}"
            )
            verify_staged(settings, weights, region)
    again = stage_weights(SMOL, revision=ref.revision, overrides=overrides)
    assert again == weights  # already staged (same record, same staged_at): returned without restaging


def _tiny_blob(sample_set: SampleSet) -> tuple[ModelRef, str, int]:
    sample = sample_set.get(TINY)
    entry = sample_set.store().get_commit(TINY, sample.revision).files["model.safetensors"]
    return ModelRef(repo_id=TINY, revision=sample.revision), entry.sha256, entry.size


def test_forged_blob_with_the_right_metadata_is_replaced_not_skipped(
    sample_set: SampleSet,
    hub_factory: Callable[..., HubServer],
    stage_env: Callable[[HubServer], dict[str, Any]],
    tmp_path: Path,
) -> None:
    overrides = stage_env(hub_factory(sample_set.store()))
    settings = _settings(overrides)
    ref, sha, size = _tiny_blob(sample_set)
    name = model_prefix(ref) + "model.safetensors"
    with RegionalBlobStore(settings.storage) as store:
        # A forged copy: right size, right sha256 in metadata, wrong bytes. Metadata decides nothing: the copy
        # re-hashes what is there and replaces it.
        for region in ("eastus", "westeurope"):
            store.ensure_container(region)
            store.blob(region, name).upload_blob(b"\x00" * size, metadata={"sha256": sha})
    weights = stage_weights(TINY, overrides=overrides)
    with RegionalBlobStore(settings.storage) as store:
        for region in REGIONS:
            assert store.sha256_of(region, name) == (sha, size), region
    for region in REGIONS:
        verify_staged(settings, weights, region)
    other = load_settings(**overrides, data_dir=tmp_path / "other-key")
    with pytest.raises(WeightsSignatureError, match="configured key"):
        verify_staged(other, weights, "eastus")


def test_wrong_lfs_hash_is_rejected_before_any_upload(
    hub_store: RepoStore,
    hub_factory: Callable[..., HubServer],
    stage_env: Callable[[HubServer], dict[str, Any]],
) -> None:
    sha = build_repo(hub_store, "org/lying", weights=tiny_safetensors(seed=9))
    entry = hub_store.get_commit("org/lying", sha).files["model.safetensors"]
    blob = hub_store.object_path(entry.sha256)
    blob.write_bytes(blob.read_bytes()[:-4] + b"evil")
    overrides = stage_env(hub_factory(hub_store))
    with pytest.raises(WeightsRejectedError, match="hash-mismatch"):
        stage_weights("org/lying", overrides=overrides)
    settings = _settings(overrides)
    ref = ModelRef(repo_id="org/lying", revision=sha)
    _nothing_staged(settings, ref, StageOutcome.REJECTED)
    with CatalogStore.from_settings(settings) as catalog:
        result = catalog.stage_result(ref, StageName.STAGE)
    assert result is not None and result.payload["findings"][0]["code"] == "weights.hash-mismatch"
    with RegionalBlobStore(settings.storage) as store:
        assert store.list_names("eastus", model_prefix(ref)) == []


def test_wrong_signing_key_fails_before_any_upload(
    sample_set: SampleSet,
    hub_factory: Callable[..., HubServer],
    stage_env: Callable[[HubServer], dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    overrides = stage_env(hub_factory(sample_set.store()))
    rsa_pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    monkeypatch.setenv("CURATE_SIGNING__KEY_PEM", rsa_pem.decode())
    with pytest.raises(SigningKeyError, match="P-256"):
        stage_weights(TINY, overrides=overrides)
    settings = _settings(overrides)
    ref, _, _ = _tiny_blob(sample_set)
    _nothing_staged(settings, ref, StageOutcome.FAILED)
    with RegionalBlobStore(settings.storage) as store:
        assert store.list_names("eastus", model_prefix(ref)) == []


def test_unreachable_storage_fails_after_retries_with_nothing_staged(
    sample_set: SampleSet,
    hub_factory: Callable[..., HubServer],
    stage_env: Callable[[HubServer], dict[str, Any]],
    azurite: AzuriteStack,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    overrides = stage_env(hub_factory(sample_set.store()))
    dead = free_port()
    for region in REGIONS:
        conn = connection_string(region, dev_account_key(region), dead)
        monkeypatch.setenv(f"CURATE_STORAGE__REGIONS__{region.upper()}__CONNECTION_STRING", conn)
    overrides["storage"]["retries"] = 0
    with pytest.raises(StorageUnavailableError, match="curate dev up"):
        stage_weights(TINY, overrides=overrides)
    ref, _, _ = _tiny_blob(sample_set)
    with CatalogStore.from_settings(_settings(overrides)) as catalog:
        assert catalog.staged(ref) is None
        result = catalog.stage_result(ref, StageName.STAGE)
    assert result is not None and result.outcome is StageOutcome.FAILED
    assert "could not reach" in result.reason


def test_curate_stage_cli_prints_the_staged_record_and_progress(
    sample_set: SampleSet,
    hub_factory: Callable[..., HubServer],
    stage_env: Callable[[HubServer], dict[str, Any]],
    tmp_path: Path,
) -> None:
    hub = hub_factory(sample_set.store())
    stage_env(hub)
    events: list[ProgressEvent] = []
    remove = add_progress_listener(events.append)
    try:
        base = ["--endpoint", hub.url, "--data-dir", str(tmp_path / "cli-data"), "stage", TINY]
        result = CliRunner().invoke(app, [*base, "--region", "eastus", "--region", "westeurope", "--json"])
    finally:
        remove()
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    ref, sha, size = _tiny_blob(sample_set)
    assert record["ref"] == ref.model_dump(mode="json")
    assert sorted(record["regions"]) == ["eastus", "westeurope"]
    assert {"name": "model.safetensors", "size": size, "sha256": sha} in record["files"]
    uploaded = sum(e.advance for e in events if e.phase == "upload" and e.region == "eastus")
    assert uploaded == sum(f["size"] for f in record["files"])
    assert {e.phase for e in events} == {"download", "upload", "copy", "step"}
    steps = [e.region for e in events if e.phase == "step"]
    assert steps == ["signed", "uploaded", "replicated", "verified", "manifests", "recorded"]

    result = CliRunner().invoke(
        app,
        [
            "--endpoint",
            hub.url,
            "--data-dir",
            str(tmp_path / "cli-data"),
            "stage",
            "curation-samples/pickle-only-model",
        ],
    )
    assert result.exit_code == 1
    assert "weights.no-safetensors" in result.output
