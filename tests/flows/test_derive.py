"""Stage 4b for real: SmolLM2 staged into Azurite from the Hub test server, GGUF files derived from it inside the
llama.cpp image (no network), each signed and staged under its own prefix with a manifest linked to the source
weights' signature; the same inputs again reuse the record; a tampered derived blob no longer verifies, and the
weekly audit's repair restores it from another region's copy (or says to derive it again when none is intact)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from gguf import GGUFReader
from prefect import flow

from builders.images import BuiltImage
from devstack.docker_engine import DockerStack
from devstack.hub_server import HubServer
from devstack.samples import SampleSet
from devstack.samples.expectations import SMOLLM2
from flows.derive import derive_artifacts, derive_text, derived_weights
from flows.stage import stage_weights
from flows.stage_repair import Location, audit_regions, repair_staged
from flows.validate import plan_staged, validate_cell
from registry.blob_errors import BlobIntegrityError
from registry.blobs import MANIFEST_NAME, RegionalBlobStore, model_prefix, signature_blob_name
from registry.catalog import CatalogStore
from registry.derived_records import DerivedArtifacts
from registry.keys import signing_key
from registry.schema import StagedWeights, StageOutcome, ValidationVerdict
from registry.settings import load_settings
from tests.fixtures.docker import record_signed_image
from validators.weights_signing import verify_remote

pytestmark = [pytest.mark.integration, pytest.mark.docker]


@pytest.fixture
def derive_env(
    prefect_harness: None,
    azurite_env: Callable[[], dict[str, Any]],
    sample_set: SampleSet,
    hub_factory: Callable[..., HubServer],
    docker_stack: DockerStack,
    llama_cpp_image: BuiltImage,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[dict[str, Any], StagedWeights]]:
    """SmolLM2 staged to two regions, a signed llama.cpp image recorded, a policy that derives q8_0 and q4_k_m."""
    hub = hub_factory(sample_set.store())
    monkeypatch.setenv("CURATE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DOCKER_HOST", docker_stack.docker_host)
    monkeypatch.setenv("CURATE_HUB__ENDPOINT", hub.url)
    overrides: dict[str, Any] = {
        "storage": azurite_env(),
        "hub": {"max_retries": 0},
        "runtimes": {"llama-cpp": {"enabled": True}},
        "derive": {"quantizations": ["q8_0", "q4_k_m"]},
        "validation": {
            "dispatch": "inline",
            "health_timeout_s": 180.0,
            "bench_concurrencies": [1],
            "bench_max_requests": 2,
            "bench_max_duration_s": 30.0,
            "bench_input_tokens": 16,
            "bench_output_tokens": 4,
        },
    }
    weights = stage_weights(SMOLLM2, overrides=overrides, regions=["eastus", "westeurope"])
    record_signed_image(load_settings(**overrides), llama_cpp_image.reference, llama_cpp_image.digest, "llama-cpp")
    yield overrides, weights


@flow(name="test-audit-derived")
def _audit_and_repair(
    overrides: dict[str, Any], weights: StagedWeights, location: Location
) -> tuple[list[tuple[str, str, str]], list[dict[str, str]]]:
    """What the weekly audit does with one copy (flows/audit.py): every region re-hashed, then repaired."""
    audits = audit_regions(overrides, weights, sorted(weights.regions), deep=True, location=location)
    found = [(region, p.name, p.problem.value) for region, audit in audits.items() for p in audit.problems]
    return found, [action.row() for action in repair_staged(overrides, weights, audits, location)]


def _file_type(path: Path) -> int:
    field = GGUFReader(path).fields["general.file_type"]
    return int(field.parts[field.data[0]][0])


def test_derive_signs_each_gguf_under_its_own_prefix_linked_to_the_source(
    derive_env: tuple[dict[str, Any], StagedWeights], tmp_path: Path
) -> None:
    overrides, weights = derive_env
    assert weights.signature is not None
    settings = load_settings(**overrides)
    source_prefix = model_prefix(weights.ref)
    source_signature = source_prefix + signature_blob_name(weights.signature)
    with RegionalBlobStore(settings.storage, regions=("eastus", "westeurope")) as store:
        source_before = {n: store.sha256_of("eastus", n) for n in store.list_names("eastus", source_prefix)}

    result = derive_artifacts(SMOLLM2, weights.ref.revision, overrides=overrides)

    assert result.outcome is StageOutcome.OK, result.reason
    artifacts = DerivedArtifacts.model_validate(result.payload)
    assert [g.quantization for g in artifacts.ggufs] == ["f16", "q8_0", "q4_k_m"]
    assert artifacts.source_signature_digest == weights.signature.signature_digest
    # SmolLM2's hidden size (576) is not a multiple of 256: llama.cpp falls back for q4_k_m's k-quant rows.
    q4 = artifacts.gguf("q4_k_m")
    assert q4 is not None and q4.fallbacks and "fallback" in derive_text(result), derive_text(result)
    assert artifacts.gguf("q8_0") is not None and not artifacts.gguf("q8_0").fallbacks  # type: ignore[union-attr]
    public = signing_key(settings).public_key()
    with RegionalBlobStore(settings.storage, regions=("eastus", "westeurope")) as store:
        for gguf in artifacts.ggufs:
            for region in ("eastus", "westeurope"):
                signed = verify_remote(
                    store, region, gguf.prefix, public, signature_name=signature_blob_name(gguf.signature)
                )
                assert signed.files == {gguf.file.name: gguf.file.sha256}
                manifest = json.loads(store.get_bytes(region, gguf.prefix + MANIFEST_NAME))
                assert manifest["derived_from"] == weights.signature.signature_digest
                assert manifest["quantization"] == gguf.quantization
            local = tmp_path / gguf.file.name
            store.download_to("eastus", gguf.prefix + gguf.file.name, local)
            assert _file_type(local) == {"f16": 1, "q8_0": 7, "q4_k_m": 15}[gguf.quantization]
        # Deriving touched nothing of the source: same blobs, same signature.
        assert {n: store.sha256_of("eastus", n) for n in store.list_names("eastus", source_prefix)} == source_before
        assert source_signature in source_before

        again = derive_artifacts(SMOLLM2, weights.ref.revision, overrides=overrides)
        assert again.outcome is StageOutcome.OK and again.reason.startswith("unchanged since"), again.reason
        assert DerivedArtifacts.model_validate(again.payload).key == artifacts.key

    # The planner emits one llama.cpp template per derived quantization; the q8_0 cell serves its GGUF in the image
    # and agrees with the f16 reference it also serves.
    quantized = {t.quantization: t for t in plan_staged(settings, weights) if t.runtime == "llama-cpp"}
    assert set(quantized) == {"q8_0", "q4_k_m"}
    assert quantized["q8_0"].id == "huggingfacetb--smollm2-135m-instruct--8k-cpu-llama-cpp-q8_0"
    cell = validate_cell(SMOLLM2, weights.ref.revision, quantized["q8_0"], overrides=overrides)
    q8 = artifacts.gguf("q8_0")
    assert q8 is not None
    assert cell.verdict is ValidationVerdict.PASSED, cell.reason
    assert cell.weights_signature_digest == q8.signature.signature_digest
    assert cell.token_agreement is not None and cell.token_agreement >= settings.derive.min_token_agreement
    assert "agreement with the f16 reference" in cell.reason

    # A tampered derived blob fails verification and the cell, naming the file.
    with RegionalBlobStore(settings.storage, regions=("eastus",)) as store:
        store.put_bytes("eastus", q4.prefix + q4.file.name, b"GGUF" + b"\0" * 64)
        with pytest.raises(BlobIntegrityError, match=q4.file.name):
            verify_remote(store, "eastus", q4.prefix, public, signature_name=signature_blob_name(q4.signature))
    tampered = validate_cell(SMOLLM2, weights.ref.revision, quantized["q4_k_m"], overrides=overrides)
    assert tampered.verdict is ValidationVerdict.FAILED and q4.file.name in tampered.reason, tampered.reason

    # The weekly audit re-hashes the GGUF an entry lists under its own prefix and repairs it from the other region.
    with CatalogStore.from_settings(settings) as catalog:
        listed = {copy.files[0].name: copy for copy in derived_weights(settings, weights, catalog)}
    location = Location.of_derived(weights, listed[q4.file.name])
    assert location == Location(q4.prefix, weights.signature.signature_digest, "q4_k_m")
    found, actions = _audit_and_repair(overrides, listed[q4.file.name], location)
    assert found == [("eastus", q4.file.name, "size")], found
    assert [(a["region"], a["blob"], a["action"]) for a in actions] == [
        ("eastus", q4.file.name, "copied from westeurope")
    ]
    with RegionalBlobStore(settings.storage, regions=("eastus", "westeurope")) as store:
        signed = verify_remote(store, "eastus", q4.prefix, public, signature_name=signature_blob_name(q4.signature))
        assert signed.files == {q4.file.name: q4.file.sha256}
        manifest = json.loads(store.get_bytes("eastus", q4.prefix + MANIFEST_NAME))
        assert (manifest["derived_from"], manifest["quantization"]) == (weights.signature.signature_digest, "q4_k_m")
        # No region intact: the Hub cannot serve a derived file, so the repair says to derive it again.
        for region in ("eastus", "westeurope"):
            store.put_bytes(region, q4.prefix + q4.file.name, b"GGUF" + b"\0" * 64)
    with pytest.raises(BlobIntegrityError, match="derive it again"):
        _audit_and_repair(overrides, listed[q4.file.name], location)


def test_derive_says_why_without_a_llama_cpp_image(
    prefect_harness: None,
    azurite_env: Callable[[], dict[str, Any]],
    sample_set: SampleSet,
    hub_factory: Callable[..., HubServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hub = hub_factory(sample_set.store())
    monkeypatch.setenv("CURATE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CURATE_HUB__ENDPOINT", hub.url)
    overrides: dict[str, Any] = {
        "storage": azurite_env(),
        "hub": {"max_retries": 0},
        "runtimes": {"llama-cpp": {"enabled": True}},
        "derive": {"quantizations": ["q8_0"]},
    }
    weights = stage_weights(SMOLLM2, overrides=overrides, regions=["eastus"])
    result = derive_artifacts(SMOLLM2, weights.ref.revision, overrides=overrides)
    assert result.outcome is StageOutcome.SKIPPED
    assert "no signed llama-cpp image" in result.reason, result.reason
