"""`curate verify`: a consumer checks one published entry from the exported files alone.

Passes for a good entry; fails after tampering one blob in one region, re-pointing the image's tag, or
changing one field of the exported entry JSON; fails with another pinned key.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from decisions.publication import build_entry, passed_templates
from flows.cli.app import app
from flows.cli.exit_codes import ExitCode
from flows.publish import gather_inputs, provenance
from registry.blobs import model_prefix
from registry.catalog_export import export_catalog
from registry.entries import sign_entry
from registry.keys import generate_private_pem, load_private_key, public_pem
from registry.schema import EntryStatus, VerificationReport
from tests.fixtures.publishing import PublishChain, push_tiny_image

runner = CliRunner()


def publish_directly(chain: PublishChain) -> str:
    """Build, sign, store and export the chain's entry (what publish_model does, without Prefect)."""
    with chain.store() as store:
        inputs = gather_inputs(store, chain.settings, chain.ref)
        assert inputs.screening is not None
        entry = build_entry(
            inputs,
            task=passed_templates(inputs)[0].template.task,
            license_reference=inputs.screening.license,
            provenance=provenance(store, inputs, chain.settings.policy_digest(), "publish-run"),
        )
        store.publish(sign_entry(entry, chain.key))
    export_catalog(chain.settings)
    return entry.id


def verify(chain: PublishChain, entry_id: str, *extra: str) -> tuple[int, VerificationReport]:
    export = chain.settings.catalog_export_dir
    args = ["--data-dir", str(chain.settings.data_dir), "verify", entry_id, "--export-dir", str(export), "--json"]
    result = runner.invoke(app, [*args, *extra])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, VerificationReport.model_validate_json(result.stdout)


def failed(report: VerificationReport) -> set[str]:
    return {c.name for c in report.checks if not c.passed}


@pytest.mark.integration
def test_good_entry_verifies_end_to_end(publish_chain: PublishChain) -> None:
    entry_id = publish_directly(publish_chain)
    pinned = publish_chain.key.public_path
    code, report = verify(publish_chain, entry_id, "--public-key", str(pinned))
    assert code == 0, report
    assert report.ok and report.key_pinned
    names = {c.name for c in report.checks}
    assert {"entry-signature", "index", "image:hf-serve"} <= names
    assert {f"weights:{r}" for r in publish_chain.settings.storage.regions} <= names
    assert f"binding:{publish_chain.validation.template.id}" in names
    # Without --public-key the exported key is used, and the report says it was not pinned.
    code, report = verify(publish_chain, entry_id)
    assert code == 0 and report.ok and not report.key_pinned
    assert report.key_source.endswith(f"keys/{publish_chain.key.key_id}.pem")
    # The rich view: one line per check with a mark.
    view = runner.invoke(app, ["verify", entry_id, "--export-dir", str(publish_chain.settings.catalog_export_dir)])
    assert view.exit_code == 0 and "✓" in view.stdout and "✗" not in view.stdout


@pytest.mark.integration
def test_tampered_blob_in_one_region_fails(publish_chain: PublishChain) -> None:
    entry_id = publish_directly(publish_chain)
    name = model_prefix(publish_chain.ref) + "model.safetensors"
    sha = next(f.sha256 for f in publish_chain.weights.files if f.name == "model.safetensors")
    with publish_chain.blobs() as blobs:
        original = blobs.get_bytes("westeurope", name)
        tampered = original[:-1] + bytes([original[-1] ^ 0xFF])
        blobs.put_bytes("westeurope", name, tampered, metadata={"sha256": sha})
    code, report = verify(publish_chain, entry_id, "--public-key", str(publish_chain.key.public_path))
    assert code == 1 and not report.ok
    assert failed(report) == {"weights:westeurope"}
    detail = next(c.detail for c in report.checks if c.name == "weights:westeurope")
    assert "model.safetensors" in detail and "signed sha256" in detail


@pytest.mark.integration
def test_repointed_image_tag_fails(publish_chain: PublishChain) -> None:
    entry_id = publish_directly(publish_chain)
    registry = publish_chain.image.reference.split("/", 1)[0]
    tag = publish_chain.image.reference.rsplit(":", 1)[1]
    other = push_tiny_image(registry, publish_chain.repository, tag, b"a different image under the same tag")
    assert other != publish_chain.image.digest
    code, report = verify(publish_chain, entry_id)
    assert code == 1
    assert failed(report) == {"image:hf-serve"}
    detail = next(c.detail for c in report.checks if c.name == "image:hf-serve")
    assert "tag was moved" in detail


@pytest.mark.integration
def test_changed_field_of_exported_entry_fails(publish_chain: PublishChain) -> None:
    entry_id = publish_directly(publish_chain)
    path = publish_chain.settings.catalog_export_dir / "entries" / f"{entry_id}.json"
    data = json.loads(path.read_text())
    data["templates"][0]["metrics"][0]["output_token_throughput"] = 999.0
    path.write_text(json.dumps(data, indent=2))
    code, report = verify(publish_chain, entry_id)
    assert code == 1
    assert failed(report) == {"entry-signature", "index"}
    assert "changed after it was signed" in next(c.detail for c in report.checks if c.name == "entry-signature")


@pytest.mark.integration
def test_another_pinned_key_fails(publish_chain: PublishChain, tmp_path: Path) -> None:
    entry_id = publish_directly(publish_chain)
    stranger = tmp_path / "stranger.pem"
    stranger.write_bytes(public_pem(load_private_key(generate_private_pem())))
    code, report = verify(publish_chain, entry_id, "--public-key", str(stranger))
    assert code == 1
    assert {"entry-signature", "image:hf-serve"} <= failed(report)
    assert any(name.startswith("weights:") for name in failed(report))


@pytest.mark.integration
def test_withdrawn_entry_fails_on_status_only(publish_chain: PublishChain) -> None:
    entry_id = publish_directly(publish_chain)
    with publish_chain.store() as store:
        store.set_entry_status(entry_id, EntryStatus.WITHDRAWN, "licence changed to CC-BY-NC-4.0")
    export_catalog(publish_chain.settings)
    code, report = verify(publish_chain, entry_id)
    assert code == 1
    assert failed(report) == {"status"}
    assert "CC-BY-NC-4.0" in next(c.detail for c in report.checks if c.name == "status")


@pytest.mark.integration
def test_withdrawn_entry_relabelled_published_fails_on_the_signed_index(publish_chain: PublishChain) -> None:
    entry_id = publish_directly(publish_chain)
    with publish_chain.store() as store:
        store.set_entry_status(entry_id, EntryStatus.WITHDRAWN, "repository gone")
    export_catalog(publish_chain.settings)
    export = publish_chain.settings.catalog_export_dir
    entry_path = export / "entries" / f"{entry_id}.json"
    data = json.loads(entry_path.read_text())
    data["status"], data["status_reason"] = "published", ""
    entry_path.write_text(json.dumps(data))  # the entry signature leaves the status out: it still verifies
    code, report = verify(publish_chain, entry_id)
    assert code == 1 and failed(report) == {"index"}
    index = json.loads((export / "index.json").read_text())
    index["entries"][0]["status"] = "published"
    (export / "index.json").write_text(json.dumps(index))
    code, report = verify(publish_chain, entry_id)
    assert code == 1 and failed(report) == {"index"}
    assert "changed after it was signed" in next(c.detail for c in report.checks if c.name == "index")


def test_unknown_entry_is_not_found_and_a_hostile_id_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["verify", "acme--nothing", "--export-dir", str(tmp_path)])
    assert result.exit_code == ExitCode.NOT_FOUND
    assert "no exported entry" in result.output
    outside = tmp_path / "outside.json"
    outside.write_text("{}")
    (tmp_path / "export" / "entries").mkdir(parents=True)
    result = runner.invoke(app, ["verify", "../../outside", "--export-dir", str(tmp_path / "export")])
    assert result.exit_code == ExitCode.USAGE and "not a catalog entry id" in result.stderr
