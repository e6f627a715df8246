"""The weekly pipeline and the per-model rerun: orchestration only, every rule lives in the packages below.

Stages run so far: 1 discover. Later stages are added here as they land (see README "Stages").
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from registry.catalog import CatalogStore
from registry.discovery import resolve_one
from registry.hub import hub_source
from registry.schema import Candidate, Decision, RunSummary

from flows.discover import discover_models, settings_from


def _run_markdown(summary: RunSummary, candidates: list[Candidate]) -> str:
    selected = [c for c in candidates if c.decision is Decision.SELECTED]
    lines = [
        f"# Curation run `{summary.run_id}`",
        "",
        f"- candidates: {len(candidates)}",
        f"- selected for curation: {len(selected)}",
        "",
        "| repository | revision | stage 1 |",
        "|---|---|---|",
    ]
    lines += [f"| `{c.repo_id}` | `{c.revision[:12]}` | {c.decision.value}: {c.reason} |" for c in candidates]
    return "\n".join(lines)


@flow(name="weekly-curation", log_prints=True)
def weekly_curation(overrides: dict[str, Any] | None = None, limit: int | None = None) -> RunSummary:
    """discover -> (later: screen -> build -> stage -> validate -> publish) for the trending models."""
    logger = get_run_logger()
    settings = settings_from(overrides)
    with CatalogStore.from_settings(settings) as store:
        run = store.start_run(kind="weekly", flow_run_id=str(flow_run.id or ""))
    candidates = discover_models(overrides=overrides, limit=limit, run_id=run.run_id)
    selected = [c for c in candidates if c.decision is Decision.SELECTED]
    with CatalogStore.from_settings(settings) as store:
        summary = store.finish_run(run.run_id, status="completed", candidates=len(candidates), selected=len(selected))
    create_markdown_artifact(key="curation-run", markdown=_run_markdown(summary, candidates))
    logger.info("run %s: %d candidates, %d selected", summary.run_id, len(candidates), len(selected))
    return summary


@flow(name="rerun-model", log_prints=True)
def rerun_model(
    repo_id: str, revision: str | None = None, overrides: dict[str, Any] | None = None
) -> Candidate:
    """Curate one model by hand at `revision` (default: the current head), whatever its trending rank."""
    settings = settings_from(overrides)
    source = hub_source(settings.hub)
    try:
        candidate = resolve_one(source, repo_id, revision)
    finally:
        source.close()
    with CatalogStore.from_settings(settings) as store:
        run = store.start_run(kind="rerun", flow_run_id=str(flow_run.id or ""))
        store.record_candidates(run.run_id, [candidate])
        store.finish_run(run.run_id, status="completed", candidates=1, selected=1)
    create_markdown_artifact(
        key="rerun-model",
        markdown=f"# Rerun `{candidate.repo_id}`\n\npinned to `{candidate.revision}`: {candidate.reason}",
    )
    return candidate
