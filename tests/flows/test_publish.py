"""`publish_model`: gate, re-verify, sign, one transaction, export + upload, idempotent republishing."""

from __future__ import annotations

import hashlib
import json

import pytest

from decisions.publication import latest_validations
from flows.publish import publish_model
from registry.blobs import model_prefix
from registry.catalog_tuf import target_name
from registry.entries import entry_digest, verify_entry
from registry.schema import (
    EntryStatus,
    ScreeningReport,
    StageName,
    StageOutcome,
    ValidationVerdict,
    Verdict,
)
from tests.fixtures.publishing import PublishChain, validation_for

pytestmark = pytest.mark.usefixtures("prefect_harness")


def catalog_blobs(chain: PublishChain) -> dict[str, set[str]]:
    with chain.blobs(chain.settings.storage.catalog_container) as blobs:
        return {region: set(blobs.list_names(region, "")) for region in blobs.regions}


@pytest.mark.integration
def test_publishes_signed_entry_exports_uploads_and_republishing_writes_nothing(publish_chain: PublishChain) -> None:
    chain = publish_chain
    result = publish_model(chain.ref.repo_id, chain.ref.revision, overrides=chain.overrides)
    assert result.outcome is StageOutcome.OK, result.reason
    assert result.stage is StageName.PUBLISH and result.payload["changed"] is True
    with chain.store() as store:
        entry = store.entry(result.payload["entry_id"])
        assert entry is not None
        assert len(store.entry_history(entry.id)) == 1
        recorded = store.stage_result(chain.ref, StageName.PUBLISH)
    assert recorded is not None and recorded.outcome is StageOutcome.OK
    verify_entry(entry, chain.key.public_key())
    assert entry_digest(entry) == result.payload["entry_digest"]
    # What the entry says.
    assert entry.model == chain.ref and entry.status is EntryStatus.PUBLISHED
    assert entry.license.spdx == "Apache-2.0" and entry.license.url
    assert entry.task == "chat"
    (template,) = entry.templates
    assert template.template.id == chain.validation.template.id
    assert template.image == chain.image.pinned == entry.images["hf-serve"]
    assert entry.image_tags == {"hf-serve": chain.image.reference}
    assert template.metrics[0].output_token_throughput == pytest.approx(14.2)
    assert set(entry.weights.regions) == set(chain.settings.storage.regions)
    provenance = entry.provenance
    assert provenance.flow_run_ids["screen"] == "screen-run-1" and provenance.flow_run_ids["stage"] == "stage-run-1"
    assert provenance.flow_run_ids["publish"] == result.run_id
    assert provenance.flow_run_ids[f"validate:{template.template.id}"] == chain.validation.flow_run_id
    assert {"prefect", "transformers", "trivy", "model-curation"} <= set(provenance.tool_versions)
    assert provenance.policy_digest == chain.settings.policy_digest()
    # The export and its upload to the catalog container in every region.
    export = chain.settings.catalog_export_dir
    plain = {f"entries/{entry.id}.json", "index.json", "index.json.sig", f"keys/{chain.key.key_id}.pem"}
    metadata = {f"metadata/{n}" for n in ("1.root.json", "root.json", "1.targets.json", "1.catalog.json")}
    metadata |= {"metadata/1.snapshot.json", "metadata/timestamp.json"}
    targets = {  # the same files under their TUF consistent-snapshot names
        f"targets/{target_name(name, hashlib.sha256((export / name).read_bytes()).hexdigest())}" for name in plain
    }
    exported = plain | metadata | targets
    assert {p.relative_to(export).as_posix() for p in export.rglob("*") if p.is_file()} == exported
    index = json.loads((export / "index.json").read_text())
    assert index["entries"][0]["digest"] == entry_digest(entry)
    assert catalog_blobs(chain) == {region: exported for region in chain.settings.storage.regions}

    again = publish_model(chain.ref.repo_id, chain.ref.revision, overrides=chain.overrides)
    assert again.outcome is StageOutcome.OK and again.payload["changed"] is False
    assert again.payload["export"]["written"] == [] and again.payload["export"]["uploaded"] == []
    with chain.store() as store:
        assert len(store.entry_history(entry.id)) == 1
        assert store.entry(entry.id) == entry


@pytest.mark.integration
def test_unpublishable_model_lists_every_reason_and_writes_nothing(publish_chain: PublishChain) -> None:
    chain = publish_chain
    with chain.store() as store:
        report = store.screening(chain.ref)
        assert report is not None
        store.record_screening(
            ScreeningReport.model_validate(
                {**report.model_dump(), "verdict": Verdict.NEEDS_REVIEW, "review": ("licence text",)}
            )
        )
        store.record_validation(
            chain.ref,
            validation_for(
                chain.ref, chain.image, chain.weights, verdict=ValidationVerdict.FAILED, reason="chat-basic"
            ),
        )
    result = publish_model(chain.ref.repo_id, chain.ref.revision, overrides=chain.overrides)
    assert result.outcome is StageOutcome.REJECTED
    assert result.payload["reasons"] == [
        "screening verdict is needs-review, not accepted",
        "no deployment template passed validation on a signed, scanned image",
    ]
    with chain.store() as store:
        assert store.entries() == []
        recorded = store.stage_result(chain.ref, StageName.PUBLISH)
    assert recorded is not None and recorded.outcome is StageOutcome.REJECTED
    assert not chain.settings.catalog_export_dir.exists()


@pytest.mark.integration
def test_tampered_blob_fails_reverification_and_nothing_is_published(publish_chain: PublishChain) -> None:
    chain = publish_chain
    name = model_prefix(chain.ref) + "config.json"
    sha = next(f.sha256 for f in chain.weights.files if f.name == "config.json")
    with chain.blobs() as blobs:
        blobs.put_bytes("southeastasia", name, b'{"model_type": "evil"}', metadata={"sha256": sha})
    result = publish_model(chain.ref.repo_id, chain.ref.revision, overrides=chain.overrides)
    assert result.outcome is StageOutcome.FAILED
    (reason,) = result.payload["reasons"]
    assert reason.startswith("weights:southeastasia: ") and "config.json" in reason
    with chain.store() as store:
        assert store.entries() == []
    assert not chain.settings.catalog_export_dir.exists()


def test_newest_validation_of_a_template_wins(publish_chain: PublishChain) -> None:
    chain = publish_chain
    failed = validation_for(
        chain.ref,
        chain.image,
        chain.weights,
        verdict=ValidationVerdict.FAILED,
        started_at=chain.validation.started_at.replace(year=chain.validation.started_at.year + 1),
    )
    assert latest_validations([chain.validation, failed]) == [failed]
    assert latest_validations([failed, chain.validation]) == [failed]


@pytest.mark.integration
def test_flagged_entry_stays_flagged_and_withdrawn_is_not_republished(publish_chain: PublishChain) -> None:
    chain = publish_chain
    first = publish_model(chain.ref.repo_id, chain.ref.revision, overrides=chain.overrides, export=False)
    assert first.outcome is StageOutcome.OK and "export" not in first.payload
    assert not chain.settings.catalog_export_dir.exists()
    entry_id = first.payload["entry_id"]
    with chain.store() as store:
        store.set_entry_status(entry_id, EntryStatus.FLAGGED, "image fails a rescan")
    again = publish_model(chain.ref.repo_id, chain.ref.revision, overrides=chain.overrides, export=False)
    assert again.outcome is StageOutcome.OK and again.payload["changed"] is False
    with chain.store() as store:
        flagged = store.entry(entry_id)
        assert flagged is not None and flagged.status is EntryStatus.FLAGGED
        store.set_entry_status(entry_id, EntryStatus.WITHDRAWN, "repository gone")
    refused = publish_model(chain.ref.repo_id, chain.ref.revision, overrides=chain.overrides, export=False)
    assert refused.outcome is StageOutcome.SKIPPED and "withdrawn" in refused.reason
    with chain.store() as store:
        withdrawn = store.entry(entry_id)
        assert withdrawn is not None and withdrawn.status is EntryStatus.WITHDRAWN
