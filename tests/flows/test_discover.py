"""Stage 1 end to end: the discover flow and `curate discover` against the Hub test server with the samples."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from devstack.hub_server import HubServer
from devstack.samples import SampleSet
from flows.cli import app
from flows.cli.exit_codes import ExitCode
from flows.discover import discover_models
from registry.catalog import CatalogStore
from registry.schema import Decision, ModelOutcome
from registry.settings import load_settings

pytestmark = pytest.mark.integration


def overrides(hub: HubServer, data_dir: Path) -> dict[str, Any]:
    return {"hub": {"endpoint": hub.url}, "data_dir": str(data_dir)}


async def _artifact_keys() -> set[str]:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        artifacts = await client.read_artifacts()
    return {a.key for a in artifacts if a.key}


def test_flow_ranks_pins_decides_persists_and_publishes_artifacts(
    prefect_harness: None, hub_server: HubServer, sample_set: SampleSet, tmp_path: Path
) -> None:
    candidates = discover_models(overrides=overrides(hub_server, tmp_path), limit=50)

    listed = [s for s in sample_set.samples if not s.private]
    assert [c.repo_id for c in candidates] == [s.repo_id for s in listed]
    scores = [c.trending_score for c in candidates]
    assert scores == sorted(scores, reverse=True)
    assert [c.rank for c in candidates] == list(range(1, len(candidates) + 1))
    for candidate in candidates:
        assert candidate.revision == sample_set.get(candidate.repo_id).revision
    assert all(not c.private for c in candidates)
    gated = [c for c in candidates if c.gated]
    assert gated and all(c.decision is Decision.SELECTED for c in gated)  # screening asks for the token

    with CatalogStore(load_settings(data_dir=tmp_path).catalog_url) as store:
        stored = store.candidates()
    assert [c.ref for c in stored] == [c.ref for c in candidates]
    assert {"discovery-candidates", "discovery-summary"} <= asyncio.run(_artifact_keys())


def test_policy_filters_and_requested_models(
    prefect_harness: None, hub_server: HubServer, sample_set: SampleSet, tmp_path: Path
) -> None:
    smol = sample_set.get("HuggingFaceTB/SmolLM2-135M-Instruct")
    minilm = sample_set.get("sentence-transformers/all-MiniLM-L6-v2")
    settings = overrides(hub_server, tmp_path)
    settings["discovery"] = {"pipeline_tags": ["text-generation"], "excluded_orgs": ["curation-samples"]}
    candidates = discover_models(overrides=settings, limit=1, requested=[f"{minilm.repo_id}@{minilm.revision}"])

    assert [c.repo_id for c in candidates] == [smol.repo_id, minilm.repo_id]
    assert candidates[0].decision is Decision.SELECTED
    requested = candidates[1]
    assert requested.rank is None and requested.revision == minilm.revision
    assert requested.decision is Decision.SKIPPED
    assert "task 'sentence-similarity' is not curated" in requested.reason


def test_a_requested_model_that_does_not_resolve_is_its_own_failed_row(
    prefect_harness: None, hub_server: HubServer, sample_set: SampleSet, tmp_path: Path
) -> None:
    gone = "curation-samples/no-longer-there"
    candidates = discover_models(overrides=overrides(hub_server, tmp_path), limit=2, requested=[gone])

    assert len(candidates) == 2 and gone not in {c.repo_id for c in candidates}  # the others go on
    with CatalogStore(load_settings(data_dir=tmp_path).catalog_url) as store:
        (run,) = store.runs()
        (row,) = store.model_rows(run.run_id)
    assert run.status == "completed"
    assert (row.repo_id, row.stage, row.outcome, row.revision) == (gone, "discover", ModelOutcome.FAILED, None)
    assert "did not resolve" in row.reason and "not found" in row.reason


def test_cli_discover_json_has_the_documented_shape(
    prefect_harness: None, hub_server: HubServer, sample_set: SampleSet, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        app, ["--endpoint", hub_server.url, "--data-dir", str(tmp_path), "discover", "--limit", "3", "--json"]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 3
    for row in rows:
        for key in ("trending_score", "likes", "downloads", "pipeline_tag", "license", "decision", "reason"):
            assert key in row
        assert len(row["ref"]["revision"]) == 40
        assert row["ref"]["revision"] == sample_set.get(row["ref"]["repo_id"]).revision
    assert rows[0]["ref"]["repo_id"] == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_cli_reports_an_unreachable_hub_clearly(tmp_path: Path) -> None:
    from devstack.net import free_port

    dead = f"http://127.0.0.1:{free_port()}"  # refused: not retried, and checked before any flow run starts
    result = CliRunner().invoke(app, ["--endpoint", dead, "--data-dir", str(tmp_path), "discover", "--limit", "2"])
    assert result.exit_code == ExitCode.UNREACHABLE
    assert result.stderr.startswith("error: cannot reach the Hub") and len(result.stderr.splitlines()) == 1
