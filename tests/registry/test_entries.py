"""The publication gate, entry signatures and the export: what makes a catalog entry trustworthy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from registry.entries import (
    GateInputs,
    PublicationError,
    build_entry,
    export_entries,
    load_exported_entry,
    publication_gate,
    sign_entry,
    verify_entry,
)
from registry.keys import signing_key
from registry.schema import (
    CatalogEntry,
    LicenseReference,
    Provenance,
    RuntimeImage,
    ScanSummary,
    ScreeningReport,
    ValidationResult,
    ValidationVerdict,
    Verdict,
)
from registry.settings import load_settings
from tests.fixtures.catalog import sample_ref, sample_signature, sample_staged, sample_template, sha64

REF = sample_ref()
IMAGE_DIGEST = f"sha256:{sha64('vllm-image')}"


def image(**changes: object) -> RuntimeImage:
    base = RuntimeImage(
        runtime="vllm",
        version="0.11.0",
        reference="127.0.0.1:5000/vllm:0.11.0-abc",
        digest=IMAGE_DIGEST,
        scan=ScanSummary(passed=True),
        signature=sample_signature(IMAGE_DIGEST, "127.0.0.1:5000/vllm:sha256-x.sig"),
    )
    return base.model_copy(update=changes)


def validation(**changes: object) -> ValidationResult:
    weights = sample_staged(REF)
    assert weights.signature is not None
    base = ValidationResult(
        template=sample_template(REF),
        image_digest=IMAGE_DIGEST,
        weights_signature_digest=weights.signature.signature_digest,
        verdict=ValidationVerdict.PASSED,
    )
    return base.model_copy(update=changes)


def inputs(**changes: object) -> GateInputs:
    values: dict[str, object] = {
        "ref": REF,
        "screening": ScreeningReport(ref=REF, verdict=Verdict.ACCEPTED),
        "weights": sample_staged(REF),
        "images": {"vllm": image()},
        "validations": [validation()],
        "required_regions": ("eastus", "westeurope"),
    }
    values.update(changes)
    return GateInputs(**values)  # type: ignore[arg-type]


def entry_for(gate: GateInputs) -> CatalogEntry:
    spdx = LicenseReference(spdx="Apache-2.0")
    return build_entry(gate, task="chat", license_reference=spdx, provenance=Provenance())


def test_everything_in_place_publishes_with_pinned_images() -> None:
    assert publication_gate(inputs()) == []
    entry = entry_for(inputs())
    assert entry.id == "qwen--qwen3-0.6b"
    assert [t.template.id for t in entry.templates] == [sample_template(REF).id]
    assert entry.images == {"vllm": f"127.0.0.1:5000/vllm@{IMAGE_DIGEST}"}


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"screening": None}, "not screened"),
        ({"screening": ScreeningReport(ref=REF, verdict=Verdict.NEEDS_REVIEW)}, "needs-review, not accepted"),
        ({"screening": ScreeningReport(ref=sample_ref(seed=9), verdict=Verdict.ACCEPTED)}, "not screened"),
        ({"weights": None}, "weights not staged"),
        ({"required_regions": ("eastus", "westeurope", "southeastasia")}, "missing in region(s) southeastasia"),
        ({"images": {"vllm": image(scan=ScanSummary(passed=False))}}, "not passed its vulnerability gate"),
        ({"images": {"vllm": image(signature=None)}}, "is not signed"),
        ({"images": {"vllm": image(digest="sha256:" + "1" * 64)}}, "no deployment template passed"),
        ({"validations": [validation(verdict=ValidationVerdict.FAILED)]}, "no deployment template passed"),
        ({"validations": [validation(verdict=ValidationVerdict.NOT_VALIDATED)]}, "no deployment template passed"),
        ({"validations": [validation(weights_signature_digest="sha256:other")]}, "no deployment template passed"),
        ({"validations": []}, "no deployment template passed"),
    ],
)
def test_each_unmet_gate_blocks_publication(changes: dict[str, object], reason: str) -> None:
    gate = inputs(**changes)
    assert any(reason in r for r in publication_gate(gate)), publication_gate(gate)
    with pytest.raises(PublicationError, match="cannot be published"):
        entry_for(gate)


def test_unverified_region_blocks_publication() -> None:
    weights = sample_staged(REF)
    east = weights.regions["eastus"].model_copy(update={"verified_at": None})
    gate = inputs(weights=weights.model_copy(update={"regions": {**weights.regions, "eastus": east}}))
    assert any("not verified in region(s) eastus" in r for r in publication_gate(gate))


def test_failed_templates_are_left_out_but_passed_ones_listed() -> None:
    failing = validation(template=sample_template(REF, 128), verdict=ValidationVerdict.FAILED)
    entry = entry_for(inputs(validations=[validation(), failing]))
    assert [t.template.id for t in entry.templates] == [sample_template(REF).id]


def test_signature_round_trip_and_tamper_detection(tmp_path: Path) -> None:
    key = signing_key(load_settings(data_dir=tmp_path))
    signed = sign_entry(entry_for(inputs()), key)
    verify_entry(signed, key.public_key())

    flagged = signed.model_copy(update={"status_reason": "image now fails a rescan"})
    verify_entry(flagged, key.public_key())  # status changes do not break the signature

    tampered = signed.model_copy(update={"task": "embeddings"})
    with pytest.raises(PublicationError, match="changed after it was signed"):
        verify_entry(tampered, key.public_key())

    other = signing_key(load_settings(data_dir=tmp_path / "other"))
    with pytest.raises(PublicationError, match="not the trusted key"):
        verify_entry(signed, other.public_key())

    with pytest.raises(PublicationError, match="not signed"):
        verify_entry(signed.model_copy(update={"signature": None}), key.public_key())


def test_export_writes_entries_index_and_key(tmp_path: Path) -> None:
    key = signing_key(load_settings(data_dir=tmp_path))
    signed = sign_entry(entry_for(inputs()), key)
    index_path = export_entries([signed], tmp_path / "export", key.public_key())
    index = json.loads(index_path.read_text())
    assert [e["id"] for e in index["entries"]] == [signed.id]
    assert (tmp_path / "export" / "keys" / f"{key.key_id}.pem").is_file()
    loaded = load_exported_entry(tmp_path / "export", signed.id)
    assert loaded == signed
    verify_entry(loaded, key.public_key())
    with pytest.raises(PublicationError, match="no exported entry"):
        load_exported_entry(tmp_path / "export", "nope--nope")
