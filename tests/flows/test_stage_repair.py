"""Regions repair themselves (issue 16): the Hub test server's tiny sample staged to three Azurite regions,
published with a tiny signed image, then broken in the ways the issue names.

- a blob overwritten in one region with its metadata intact: `curate verify` fails and its advice
  (`curate stage ... --verify`) repairs it from a verified copy, logged in a `repair-*` artifact;
- missing blobs, a missing signature, an extra blob and a file altered in every region: one run repairs them all
  (copies from other regions, the Hub at the pinned revision for what no region holds);
- a forced re-stage of a published model: `curate verify` passes at every step boundary and after;
- the weekly audit re-hashes published entries' copies within its byte budget and repairs what fails;
- staging SIGKILLed at every step boundary (signed, uploaded, replicated, manifests: just before the record): the
  next run completes and the model publishes; a forced re-stage killed after signing or after writing every
  region's manifests leaves the live entry verifiable and the record consistent with every region.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prefect.settings import PREFECT_API_URL
from typer.testing import CliRunner

from devstack.hub_server import HubServer
from devstack.samples import SampleSet
from flows.audit import audit_published_weights
from flows.catalog_refresh import refresh_catalog
from flows.cli.app import app
from flows.publish import publish_model
from flows.stage import stage_weights, verify_staged
from flows.stage_progress import ProgressEvent, add_progress_listener
from registry.blobs import RegionalBlobStore, model_prefix, signature_blob_name
from registry.catalog import CatalogStore
from registry.entries import entry_id
from registry.schema import ModelRef, StagedWeights, StageName, StageOutcome
from registry.settings import Settings, load_settings
from registry.verification_records import VerificationReport
from tests.fixtures.azurite import fresh_catalog_container, fresh_container
from tests.fixtures.publishing import make_publishable

TINY = "curation-samples/tiny-llama-chat"
REGIONS = ("eastus", "westeurope", "southeastasia")
BOUNDARIES = ("signed", "uploaded", "replicated", "verified", "manifests")

pytestmark = pytest.mark.integration
runner = CliRunner()


@dataclass
class Env:
    hub: HubServer
    registry: str
    data_dir: Path
    overrides: dict[str, Any]

    def settings(self) -> Settings:
        return load_settings(**self.overrides)

    def cli(self, *args: str) -> Any:
        return runner.invoke(app, ["--endpoint", self.hub.url, "--data-dir", str(self.data_dir), *args])


@pytest.fixture
def env(
    prefect_harness: None,
    azurite_env: Callable[[], dict[str, Any]],
    oci_registry: str,
    sample_set: SampleSet,
    hub_factory: Callable[..., HubServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[[str], Env]:
    """A data dir and containers of their own per call (flows, the CLI and subprocesses read the environment)."""
    hub = hub_factory(sample_set.store())
    azurite_env()
    monkeypatch.setenv("CURATE_HUB__ENDPOINT", hub.url)
    monkeypatch.setenv("CURATE_IMAGES__REGISTRY", oci_registry)

    def make(name: str) -> Env:
        data_dir = tmp_path / name
        container = fresh_container()
        monkeypatch.setenv("CURATE_DATA_DIR", str(data_dir))
        monkeypatch.setenv("CURATE_STORAGE__CONTAINER", container)
        monkeypatch.setenv("CURATE_STORAGE__CATALOG_CONTAINER", fresh_catalog_container())
        return Env(hub, oci_registry, data_dir, {"hub": {"max_retries": 0}, "data_dir": str(data_dir)})

    return make


def _publish(env: Env, weights: StagedWeights) -> str:
    make_publishable(env.settings(), weights, env.registry)
    result = publish_model(weights.ref.repo_id, weights.ref.revision, overrides=env.overrides)
    assert result.outcome is StageOutcome.OK, result.reason
    return entry_id(weights.ref.repo_id)


def _verify(env: Env, entry: str) -> VerificationReport:
    export = env.settings().catalog_export_dir
    result = env.cli("verify", entry, "--export-dir", str(export), "--json")
    assert result.exit_code in (0, 1), result.output
    return VerificationReport.model_validate_json(result.stdout)


def _failed(report: VerificationReport) -> dict[str, str]:
    return {c.name: c.detail for c in report.checks if not c.passed}


def _tamper(blobs: RegionalBlobStore, region: str, name: str) -> None:
    """Overwrite a blob with bytes of the same size, keeping its metadata (the sha256 claim)."""
    info = blobs.properties(region, name)
    assert info is not None
    data = blobs.get_bytes(region, name)
    blobs.blob(region, name).upload_blob(bytes(len(data)), overwrite=True, metadata=info.metadata)


def _weight_downloads(hub: HubServer) -> int:
    return sum(1 for r in hub.requests.entries() if r.path.endswith("/model.safetensors") and r.method == "GET")


def _repairs(settings: Settings, ref: ModelRef) -> list[dict[str, str]]:
    with CatalogStore.from_settings(settings) as catalog:
        result = catalog.stage_result(ref, StageName.STAGE)
    assert result is not None and result.outcome is StageOutcome.OK
    return list(result.payload.get("repairs", []))


def test_tampered_blob_is_repaired_by_following_the_advice_of_curate_verify(env: Callable[[str], Env]) -> None:
    e = env("advice")
    weights = stage_weights(TINY, overrides=e.overrides)
    entry = _publish(e, weights)
    assert _verify(e, entry).ok
    name = model_prefix(weights.ref) + "model.safetensors"
    with RegionalBlobStore(e.settings().storage) as blobs:
        _tamper(blobs, "westeurope", name)
    report = _verify(e, entry)
    detail = _failed(report)["weights:westeurope"]
    advice = f"curate stage {TINY} --revision {weights.ref.revision} --verify"
    assert advice in detail
    # A plain run checks the signature, the manifests and every blob's size: it does not re-hash the weights.
    assert stage_weights(TINY, overrides=e.overrides) == weights
    # Following the advice re-hashes every blob, finds the altered one and copies it from a verified region.
    result = e.cli(*advice.split()[1:], "--json")
    assert result.exit_code == 0, result.output
    assert _verify(e, entry).ok
    repairs = _repairs(e.settings(), weights.ref)
    assert [(r["region"], r["blob"]) for r in repairs] == [("westeurope", "model.safetensors")]
    assert repairs[0]["action"].startswith("copied from ") and "content" in repairs[0]["problem"]


def test_every_kind_of_damage_is_repaired_in_one_run_from_other_regions_or_the_hub(
    env: Callable[[str], Env],
) -> None:
    e = env("damage")
    weights = stage_weights(TINY, overrides=e.overrides)
    assert weights.signature is not None
    prefix = model_prefix(weights.ref)
    settings = e.settings()
    with RegionalBlobStore(settings.storage) as blobs:
        blobs.delete("eastus", prefix + "config.json")
        blobs.delete("southeastasia", prefix + signature_blob_name(weights.signature))
        blobs.put_bytes("westeurope", prefix + "evil.py", b"import os")
        for region in REGIONS:  # no region holds a good copy: only the Hub at the pinned revision does
            _tamper(blobs, region, prefix + "model.safetensors")
    downloads_before = _weight_downloads(e.hub)
    stage_weights(TINY, overrides=e.overrides, verify=True)
    for region in REGIONS:
        verify_staged(settings, weights, region)
    done = {(r["region"], r["blob"]): r["action"] for r in _repairs(settings, weights.ref)}
    assert done[("eastus", "config.json")].startswith("copied from ")
    assert done[("southeastasia", signature_blob_name(weights.signature))].startswith("copied from ")
    assert done[("westeurope", "evil.py")] == "deleted"
    assert {done[(r, "model.safetensors")] for r in REGIONS} == {"uploaded from the Hub at the pinned revision"}
    assert _weight_downloads(e.hub) > downloads_before
    with RegionalBlobStore(settings.storage) as blobs:
        assert blobs.properties("westeurope", prefix + "evil.py") is None


def test_restaging_a_published_model_keeps_the_live_entry_verifiable_throughout(env: Callable[[str], Env]) -> None:
    e = env("restage")
    weights = stage_weights(TINY, overrides=e.overrides)
    entry = _publish(e, weights)
    seen: dict[str, bool] = {}

    def check(event: ProgressEvent) -> None:
        if event.phase == "step":
            seen[event.region] = _verify(e, entry).ok

    remove = add_progress_listener(check)
    try:
        restaged = stage_weights(TINY, overrides=e.overrides, force=True)
    finally:
        remove()
    assert seen == dict.fromkeys((*BOUNDARIES, "recorded"), True)
    assert restaged.signature is not None and weights.signature is not None
    assert restaged.signature.signature_digest != weights.signature.signature_digest  # randomised ECDSA
    assert _verify(e, entry).ok
    # The live entry is switched only by publishing a new one (the validations ran on the old signature).
    result = publish_model(TINY, weights.ref.revision, overrides=e.overrides)
    assert result.outcome is StageOutcome.REJECTED
    with CatalogStore.from_settings(e.settings()) as catalog:
        live = catalog.entry(entry)
    assert live is not None and live.weights.signature == weights.signature
    assert _verify(e, entry).ok


def _kill_at(boundary: str, overrides: dict[str, Any], *, force: bool, log: Path) -> None:
    """Run stage_weights in a subprocess that SIGKILLs itself when the step `boundary` has just ended."""
    code = (
        "import json, os, signal, sys\n"
        "from flows.stage import stage_weights\n"
        "from flows.stage_progress import add_progress_listener\n"
        "def kill(event):\n"
        "    if event.phase == 'step' and event.region == sys.argv[1]:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "add_progress_listener(kill)\n"
        "stage_weights(sys.argv[3], overrides=json.loads(sys.argv[2]), force=sys.argv[4] == 'force')\n"
    )
    environ = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    args = [sys.executable, "-c", code, boundary, json.dumps(overrides), TINY, "force" if force else "plain"]
    with log.open("wb") as out:
        proc = subprocess.run(args, env=environ, stdout=out, stderr=subprocess.STDOUT, timeout=300, check=False)
    assert proc.returncode == -signal.SIGKILL, log.read_text()[-3000:]


@pytest.mark.parametrize("boundary", ("signed", "uploaded", "replicated", "manifests"))
def test_staging_killed_at_a_step_boundary_is_completed_by_the_next_run_and_publishes(
    env: Callable[[str], Env], boundary: str, tmp_path: Path
) -> None:
    e = env(f"killed-{boundary}")
    _kill_at(boundary, e.overrides, force=False, log=tmp_path / "first.log")
    with CatalogStore.from_settings(e.settings()) as catalog:
        assert catalog.staged_all() == []  # killed before anything was recorded
    weights = stage_weights(TINY, overrides=e.overrides)
    entry = _publish(e, weights)
    assert _verify(e, entry).ok


@pytest.mark.parametrize("boundary", ("signed", "manifests"))
def test_forced_restage_killed_at_a_step_boundary_leaves_the_live_entry_verifiable(
    env: Callable[[str], Env], boundary: str, tmp_path: Path
) -> None:
    """The issue's case: re-signed (or re-signed and written to every region) but never recorded."""
    e = env(f"forced-{boundary}")
    weights = stage_weights(TINY, overrides=e.overrides)
    entry = _publish(e, weights)
    _kill_at(boundary, e.overrides, force=True, log=tmp_path / "forced.log")
    assert _verify(e, entry).ok
    assert stage_weights(TINY, overrides=e.overrides) == weights  # every region still consistent with the record
    again = publish_model(TINY, weights.ref.revision, overrides=e.overrides)
    assert again.outcome is StageOutcome.OK and again.payload["changed"] is False


def test_weekly_audit_rehashes_published_copies_within_its_budget_and_repairs(env: Callable[[str], Env]) -> None:
    e = env("audit")
    weights = stage_weights(TINY, overrides=e.overrides)
    entry = _publish(e, weights)
    with RegionalBlobStore(e.settings().storage) as blobs:
        _tamper(blobs, "southeastasia", model_prefix(weights.ref) + "model.safetensors")
    assert not _verify(e, entry).ok
    # full: every published entry (staged this week, it is not due in the weekly rotation: tests/flows/test_audit.py)
    short = audit_published_weights(overrides=e.overrides, byte_budget=weights.total_bytes, full=True)  # < 3 regions
    assert short.entries == () and short.budget_exhausted
    assert audit_published_weights(overrides=e.overrides).entries == ()  # staged this week: not due
    audit = audit_published_weights(overrides=e.overrides, full=True)
    assert audit.entries == (entry,) and not audit.budget_exhausted
    assert audit.bytes_read >= 3 * weights.total_bytes  # every file of every region re-hashed
    assert (audit.problems, audit.repaired, audit.unrepairable) == (1, 1, ())
    assert _verify(e, entry).ok
    # The scheduled refresh between weekly runs writes nothing while the metadata is fresh.
    assert refresh_catalog(overrides=e.overrides).uploaded == ()
