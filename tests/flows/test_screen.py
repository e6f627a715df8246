"""The screening flow: parallel per candidate, cached by (repo, revision, policy), persisted, artifacts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from typer.testing import CliRunner

from devstack.hub_server import HubServer
from devstack.repostore import RepoStore
from flows.cli.app import app
from flows.cli.exit_codes import ExitCode
from flows.screen import screen_candidates
from registry import finding_codes as codes
from registry.catalog import CatalogStore
from registry.quotas import HUB_TAG
from registry.schema import Candidate, Decision, ModelRef, StageName, StageOutcome, Verdict
from registry.settings import load_settings
from tests.fixtures.hub import DEFAULT_CARD, model_card, tiny_safetensors
from tests.scanners.hostile import global_call

pytestmark = pytest.mark.integration


@pytest.fixture
def screen_hub(tmp_path: Path) -> Iterator[tuple[HubServer, dict[str, str]]]:
    store = RepoStore(tmp_path / "store")
    base = {
        "README.md": model_card(DEFAULT_CARD),
        "config.json": json.dumps({"model_type": "llama"}).encode(),
        "model.safetensors": tiny_safetensors(),
    }
    shas = {
        "flow/good": store.commit("flow/good", base),
        "flow/evil": store.commit("flow/evil", {**base, "pytorch_model.bin": global_call("os", "system", "id")}),
        "flow/custom": store.commit("flow/custom", {**base, "modeling_x.py": b"print('hi')\n"}),
        "flow/gone": "f" * 40,
    }
    with HubServer(store) as hub:
        yield hub, shas


def _candidates(shas: dict[str, str]) -> list[Candidate]:
    found = [Candidate(ref=ModelRef(repo_id=r, revision=s)) for r, s in shas.items()]
    skipped = Candidate(ref=ModelRef(repo_id="flow/skipped", revision="e" * 40), decision=Decision.SKIPPED)
    return [*found, skipped]


def test_screen_flow_persists_reports_and_caches_reruns(
    prefect_harness: None, screen_hub: tuple[HubServer, dict[str, str]], tmp_path: Path
) -> None:
    hub, shas = screen_hub
    overrides = {
        "hub": {"endpoint": hub.url, "max_retries": 0, "concurrency": 3},
        "data_dir": str(tmp_path / "data"),
    }
    reports = screen_candidates(_candidates(shas), overrides=overrides, run_id="run-1")
    verdicts = {r.ref.repo_id: r.verdict for r in reports}
    assert verdicts == {
        "flow/good": Verdict.ACCEPTED,
        "flow/evil": Verdict.REJECTED,
        "flow/custom": Verdict.REJECTED,
        "flow/gone": Verdict.REJECTED,
    }
    by_repo = {r.ref.repo_id: r for r in reports}
    assert codes.PICKLE_DANGEROUS_IMPORT in by_repo["flow/evil"].codes
    assert by_repo["flow/gone"].codes == (codes.REPO_NOT_FOUND,)

    settings = load_settings(**overrides)
    with CatalogStore.from_settings(settings) as store:
        saved = store.screening(ModelRef(repo_id="flow/evil", revision=shas["flow/evil"]))
        assert saved is not None and saved.verdict is Verdict.REJECTED
        stage = store.stage_result(ModelRef(repo_id="flow/custom", revision=shas["flow/custom"]), StageName.SCREEN)
        assert stage is not None and stage.outcome is StageOutcome.REJECTED
        assert "remote-code.python-file" in stage.reason

    with get_client(sync_client=True) as client:
        # the `hub` tag's limit, created as a global concurrency limit: Prefect's tag limits are those
        assert client.read_concurrency_limit_by_tag(HUB_TAG).concurrency_limit == settings.hub.concurrency

    # A rerun at the same revisions and policy costs nothing: no request reaches the Hub.
    before = len(hub.requests.entries())
    again = screen_candidates(_candidates(shas), overrides=overrides, run_id="run-2")
    assert {r.ref.repo_id: r.verdict for r in again} == verdicts
    assert len(hub.requests.entries()) == before

    # A different policy is a different cache key: the repo is screened again.
    changed = {**overrides, "screening": {"allow_remote_code": ["flow/custom"]}}
    third = screen_candidates(
        [c for c in _candidates(shas) if c.repo_id == "flow/custom"], overrides=changed, run_id="run-3"
    )
    assert [r.verdict for r in third] == [Verdict.ACCEPTED]
    assert len(hub.requests.entries()) > before


def test_curate_screen_cli_explains_every_finding(screen_hub: tuple[HubServer, dict[str, str]], tmp_path: Path) -> None:
    hub, shas = screen_hub
    runner = CliRunner()
    base = ["--endpoint", hub.url, "--data-dir", str(tmp_path / "cli-data"), "screen"]
    result = runner.invoke(app, [*base, "flow/evil", "--revision", shas["flow/evil"], "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["verdict"] == "rejected" and report["ref"]["revision"] == shas["flow/evil"]
    assert codes.PICKLE_DANGEROUS_IMPORT in [f["code"] for f in report["findings"]]

    result = runner.invoke(app, [*base, "flow/custom"])  # no revision: the head is resolved once
    assert result.exit_code == 0, result.output
    assert "rejected" in result.stdout
    lines = [line for line in result.stdout.splitlines() if line.startswith("  ")]
    assert any("remote-code.python-file" in line and "modeling_x.py" in line for line in lines)
    assert len(lines) >= 2  # one line per finding

    result = runner.invoke(app, [*base, "flow/nope"])
    assert result.exit_code == ExitCode.NOT_FOUND and "not found" in result.stderr.lower()
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_maintainer_decision_is_part_of_the_screening_cache_key(prefect_harness: None, tmp_path: Path) -> None:
    from decisions.review import new_decision
    from devstack.samples.licenses import LLAMA3_EXCERPT
    from registry.schema import ReviewVerdict

    store = RepoStore(tmp_path / "store")
    card = model_card({"license": "other", "license_name": "llama3", "license_link": "LICENSE"})
    files = {
        "README.md": card,
        "LICENSE": LLAMA3_EXCERPT.encode(),
        "config.json": json.dumps({"model_type": "llama"}).encode(),
        "model.safetensors": tiny_safetensors(),
    }
    candidate = Candidate(ref=ModelRef(repo_id="flow/llama3", revision=store.commit("flow/llama3", files)))
    with HubServer(store) as hub:
        overrides = {"hub": {"endpoint": hub.url, "max_retries": 0}, "data_dir": str(tmp_path / "data")}
        (first,) = screen_candidates([candidate], overrides=overrides, run_id="run-1")
        assert first.verdict is Verdict.NEEDS_REVIEW and first.license.file_sha256, first
        before = len(hub.requests.entries())
        (cached,) = screen_candidates([candidate], overrides=overrides, run_id="run-2")
        assert cached.verdict is Verdict.NEEDS_REVIEW and len(hub.requests.entries()) == before
        approval = new_decision(first, ReviewVerdict.APPROVE, "ada", "llama3 terms read")
        with CatalogStore.from_settings(load_settings(**overrides)) as catalog:
            catalog.record_review(approval)
        (approved,) = screen_candidates([candidate], overrides=overrides, run_id="run-3")
        assert approved.verdict is Verdict.ACCEPTED and approved.reviews == (approval,)
        assert len(hub.requests.entries()) > before  # a new decision is a new cache key: screened again
