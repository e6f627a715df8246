"""`curate verify`: a consumer checks one published entry, fetched through TUF from a pinned root; a replayed older
export (rollback) and an expired timestamp (freeze) are refused.

Passes for a good entry (from a local export, and from a region's catalog container over HTTP); fails after
tampering one blob in one region, re-pointing the image's tag, or changing one field of the exported entry JSON
(TUF refuses the file, and so do the entry signature and the signed index); fails with another pinned key.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata, Timestamp
from typer.testing import CliRunner

from decisions.publication import build_entry, passed_templates
from flows.cli.app import app
from flows.cli.exit_codes import ExitCode
from flows.publish import gather_inputs, provenance
from registry.blobs import model_prefix
from registry.catalog_export import export_catalog
from registry.catalog_tuf import signer_from_pem, update_repository
from registry.entries import PublicationError, sign_entry, verify_entry
from registry.keys import generate_private_pem, load_private_key, public_pem, signing_key
from registry.schema import EntryStatus
from registry.settings import load_settings
from registry.verification_records import VerificationReport
from tests.fixtures.publishing import PublishChain, push_tiny_image
from validators.catalog_verification import index_check

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
    args = ["--data-dir", str(chain.settings.data_dir), "verify", entry_id, "--json"]
    if "--region" not in extra:
        args += ["--export-dir", str(export)]
    result = runner.invoke(app, [*args, *extra])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, VerificationReport.model_validate_json(result.stdout)


def failed(report: VerificationReport) -> set[str]:
    return {c.name for c in report.checks if not c.passed}


@pytest.mark.integration
def test_good_entry_verifies_end_to_end(publish_chain: PublishChain, monkeypatch: pytest.MonkeyPatch) -> None:
    entry_id = publish_directly(publish_chain)
    monkeypatch.setenv("CURATE_STORAGE__CATALOG_CONTAINER", publish_chain.settings.storage.catalog_container)
    root = publish_chain.settings.catalog_export_dir / "metadata" / "1.root.json"
    pinned_root = publish_chain.settings.data_dir.parent / "pinned-root.json"
    pinned_root.write_bytes(root.read_bytes())  # obtained out of band
    code, report = verify(publish_chain, entry_id, "--root", str(pinned_root), "--region", "southeastasia")
    assert code == 0, report
    assert report.ok and report.key_pinned and report.key_id == publish_chain.key.key_id
    names = {c.name for c in report.checks}
    assert {"catalog", "entry-signature", "index", "image:hf-serve"} <= names
    assert {f"weights:{r}" for r in publish_chain.settings.storage.regions} <= names
    assert f"binding:{publish_chain.validation.template.id}" in names
    assert "catalog role delegated by targets v1" in report.key_source
    # A catalog key pinned as well must be the one the root delegates to.
    code, report = verify(publish_chain, entry_id, "--public-key", str(publish_chain.key.public_path))
    assert code == 0 and report.ok and "catalog-key" in names | {c.name for c in report.checks}
    # Without --root the export's own first root is used, and the report says it was not pinned.
    code, report = verify(publish_chain, entry_id)
    assert code == 0 and report.ok and not report.key_pinned
    # The rich view: one line per check with a mark.
    view = runner.invoke(app, ["verify", entry_id, "--export-dir", str(publish_chain.settings.catalog_export_dir)])
    assert view.exit_code == 0 and "✓" in view.stdout and "✗" not in view.stdout


@pytest.mark.integration
def test_an_approved_entry_shows_its_approval(publish_chain: PublishChain) -> None:
    from decisions.review import new_decision
    from registry.schema import ReviewVerdict, Verdict

    chain = publish_chain
    with chain.store() as store:
        screening = store.screening(chain.ref, chain.settings.policy_digest("screen"))
        assert screening is not None
        approval = new_decision(screening, ReviewVerdict.APPROVE, "ada", "community licence read: fine", "f-1")
        store.record_screening(screening.model_copy(update={"verdict": Verdict.ACCEPTED, "reviews": (approval,)}))
    entry_id = publish_directly(chain)
    code, report = verify(chain, entry_id)
    assert code == 0 and report.ok and report.approvals == (approval,)
    view = runner.invoke(app, ["verify", entry_id, "--export-dir", str(chain.settings.catalog_export_dir)])
    assert view.exit_code == 0 and "approved" in view.stdout and "by ada" in view.stdout, view.stdout


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
    export = publish_chain.settings.catalog_export_dir
    path = next((export / "targets" / "entries").glob(f"*.{entry_id}.json"))
    data = json.loads(path.read_text())
    data["templates"][0]["metrics"][0]["output_token_throughput"] = 999.0
    path.write_text(json.dumps(data, indent=2))
    code, report = verify(publish_chain, entry_id)
    assert code == 1 and failed(report) == {"catalog"}
    assert "target" in report.checks[0].detail
    # The same change re-hashed into a forged catalog: TUF's signature fails, and so would the entry's own.
    with publish_chain.store() as store:
        entry = store.entry(entry_id)
    assert entry is not None
    forged = entry.model_copy(update={"task": "embeddings"})
    with pytest.raises(PublicationError, match="changed after it was signed"):
        verify_entry(forged, publish_chain.key.public_key())


@pytest.mark.integration
def test_another_pinned_key_fails(publish_chain: PublishChain, tmp_path: Path) -> None:
    entry_id = publish_directly(publish_chain)
    stranger = tmp_path / "stranger.pem"
    stranger.write_bytes(public_pem(load_private_key(generate_private_pem())))
    code, report = verify(publish_chain, entry_id, "--public-key", str(stranger))
    assert code == 1
    assert failed(report) == {"catalog-key"}
    # A root pinned from another catalog: nothing this one serves verifies.
    other = tmp_path / "other-root.json"
    other.write_bytes(_foreign_root(tmp_path))
    code, report = verify(publish_chain, entry_id, "--root", str(other))
    assert code == 1 and failed(report) == {"catalog"}
    assert "signature" in report.checks[0].detail


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
    current = hashlib.sha256((export / "index.json").read_bytes()).hexdigest()
    index_path = export / "targets" / f"{current}.index.json"
    index = json.loads(index_path.read_text())
    index["entries"][0]["status"] = "published"
    index_path.write_text(json.dumps(index))
    code, report = verify(publish_chain, entry_id)
    assert code == 1 and failed(report) == {"catalog"}  # TUF: the index does not match its signed sha256
    with publish_chain.store() as store:
        withdrawn = store.entry(entry_id)
    assert withdrawn is not None
    relabelled = withdrawn.model_copy(update={"status": EntryStatus.PUBLISHED, "status_reason": ""})
    verify_entry(relabelled, publish_chain.key.public_key())  # the entry signature leaves the status out...
    check = index_check(export, relabelled, publish_chain.key.public_key())
    assert not check.passed and "says withdrawn" in check.detail  # ...the signed index binds it


def test_unknown_entry_is_not_found_and_a_hostile_id_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["verify", "acme--nothing", "--export-dir", str(tmp_path)])
    assert result.exit_code == ExitCode.NOT_FOUND
    assert "no TUF root" in result.output
    (tmp_path / "export" / "metadata").mkdir(parents=True)
    result = runner.invoke(app, ["verify", "../../outside", "--export-dir", str(tmp_path / "export")])
    assert result.exit_code == ExitCode.USAGE and "not a catalog entry id" in result.stderr


@pytest.mark.integration
def test_unknown_entry_of_a_verified_catalog_is_not_found(publish_chain: PublishChain) -> None:
    publish_directly(publish_chain)
    export = publish_chain.settings.catalog_export_dir
    result = runner.invoke(
        app,
        ["--data-dir", str(publish_chain.settings.data_dir), "verify", "acme--nothing", "--export-dir", str(export)],
    )
    assert result.exit_code == ExitCode.NOT_FOUND and "no exported entry" in result.output


def _foreign_root(tmp_path: Path) -> bytes:
    """The first root of another catalog (its own keys)."""
    settings = load_settings(data_dir=tmp_path / "foreign", publish={"export_dir": str(tmp_path / "foreign-export")})
    out = tmp_path / "foreign-out"
    update_repository(settings, signing_key(settings), out, out, {"index.json": b"{}"})
    return (out / "metadata" / "1.root.json").read_bytes()


@pytest.mark.integration
def test_replayed_export_and_expired_timestamp_are_refused(
    publish_chain: PublishChain, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry_id = publish_directly(publish_chain)
    settings = publish_chain.settings
    monkeypatch.setenv("CURATE_STORAGE__CATALOG_CONTAINER", settings.storage.catalog_container)
    metadata = settings.catalog_export_dir / "metadata"
    published_timestamp = (metadata / "timestamp.json").read_bytes()
    code, report = verify(publish_chain, entry_id, "--region", "westeurope")
    assert code == 0 and report.ok  # the consumer's client now trusts this export
    with publish_chain.store() as store:
        store.set_entry_status(entry_id, EntryStatus.WITHDRAWN, "licence changed to CC-BY-NC-4.0")
    export_catalog(settings)
    code, report = verify(publish_chain, entry_id, "--region", "westeurope")
    assert code == 1 and failed(report) == {"status"}
    # Someone serves the earlier export again (validly signed, entry still "published"): a rollback.
    with publish_chain.blobs(settings.storage.catalog_container) as blobs:
        blobs.put_bytes("westeurope", "metadata/timestamp.json", published_timestamp)
    code, report = verify(publish_chain, entry_id, "--region", "westeurope")
    assert code == 1 and failed(report) == {"catalog"}
    assert report.checks[0].detail.startswith("rollback:")
    # A timestamp past its expiry, validly signed by the timestamp key: a frozen catalog.
    md = Metadata[Timestamp].from_bytes((metadata / "timestamp.json").read_bytes())
    md.signed.expires = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    md.signed.version += 1
    md.sign(signer_from_pem((settings.data_dir / "keys" / "tuf" / "timestamp.pem").read_bytes()))
    with publish_chain.blobs(settings.storage.catalog_container) as blobs:
        blobs.put_bytes("southeastasia", "metadata/timestamp.json", md.to_bytes())
    code, report = verify(publish_chain, entry_id, "--region", "southeastasia")
    assert code == 1 and failed(report) == {"catalog"}
    assert report.checks[0].detail.startswith("freeze:")
