"""Stage 1 flow: discover trending models, pinned to commit shas, decided by policy, persisted, shown."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

from decisions.selection import select_candidates
from flows.retries import only_retryable
from flows.settings import settings_from
from registry.artifacts import cell, code
from registry.catalog import CatalogStore
from registry.discovery import Unresolved, pinned_candidates
from registry.hub import hub_source
from registry.quotas import HUB_TAG
from registry.schema import Candidate, Decision, ModelOutcome, ModelRow


@task(
    name="fetch-candidates", retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=only_retryable, tags=[HUB_TAG]
)
def fetch_candidates(
    overrides: dict[str, Any] | None, limit: int | None, requested: list[str] | None
) -> tuple[list[Candidate], list[Unresolved]]:
    """The decided candidates, and the requested models that did not resolve (each one's row says why)."""
    settings = settings_from(overrides)
    digest = settings.policy_digest()
    source = hub_source(settings.hub)
    unresolved: list[Unresolved] = []
    try:
        with CatalogStore.from_settings(settings) as store:
            pinned = pinned_candidates(
                source, settings.discovery, limit=limit, requested=requested, unresolved=unresolved
            )
            return select_candidates(pinned, settings.discovery, lambda ref: store.is_curated(ref, digest)), unresolved
    finally:
        source.close()


def _unresolved_row(run_id: str, request: Unresolved) -> ModelRow:
    return ModelRow(
        run_id=run_id,
        repo_id=request.repo_id,
        revision=request.revision,
        stage="discover",
        outcome=ModelOutcome.FAILED,
        reason=f"discover: {request.reason}",
        stages={"discover": f"failed: {request.reason}"},
    )


def candidate_rows(candidates: list[Candidate]) -> list[dict[str, Any]]:
    return [
        {
            "rank": c.rank if c.rank is not None else "-",
            "repo": c.repo_id,
            "sha": c.revision[:12],
            "trending_score": round(c.trending_score, 2),
            "likes": c.likes,
            "downloads": c.downloads,
            "decision": c.decision.value,
            "reason": c.reason,
        }
        for c in candidates
    ]


def summary_markdown(candidates: list[Candidate], endpoint: str) -> str:
    selected = [c for c in candidates if c.decision is Decision.SELECTED]
    lines = [
        "# Discovery",
        "",
        f"Source: `{endpoint}` — {len(candidates)} candidates, {len(selected)} selected, "
        f"{len(candidates) - len(selected)} skipped.",
        "",
        "| # | repository | revision | trending | decision | reason |",
        "|---|---|---|---|---|---|",
    ]
    for c in candidates:
        rank = str(c.rank) if c.rank is not None else "req"
        lines.append(
            f"| {rank} | {code(c.repo_id)} | {code(c.revision[:12])} | {c.trending_score:.1f} | {c.decision.value} "
            f"| {cell(c.reason)} |"
        )
    return "\n".join(lines)


@flow(name="discover", log_prints=True)
def discover_models(
    overrides: dict[str, Any] | None = None,
    limit: int | None = None,
    requested: list[str] | None = None,
    run_id: str | None = None,
) -> list[Candidate]:
    """Fetch trending candidates (+ requested ones), apply the policy, persist them and publish artifacts."""
    logger = get_run_logger()
    settings = settings_from(overrides)
    candidates, unresolved = fetch_candidates(overrides, limit, requested)
    with CatalogStore.from_settings(settings) as store:
        own_run = run_id is None
        if own_run:
            run_id = store.start_run(kind="discover", flow_run_id=str(flow_run.id or "")).run_id
        assert run_id is not None
        store.record_candidates(run_id, candidates)
        for request in unresolved:
            logger.warning("%s: %s", request.repo_id, request.reason)
            store.record_model_row(_unresolved_row(run_id, request))
        selected = sum(1 for c in candidates if c.decision is Decision.SELECTED)
        if own_run:
            store.finish_run(run_id, status="completed", candidates=len(candidates), selected=selected)
    create_table_artifact(
        key="discovery-candidates",
        table=candidate_rows(candidates),
        description=f"Trending candidates from {settings.hub.endpoint}, pinned to the sha seen at discovery.",
    )
    create_markdown_artifact(
        key="discovery-summary",
        markdown=summary_markdown(candidates, settings.hub.endpoint),
        description="Stage 1 decisions and their reasons.",
    )
    logger.info("discovered %d candidates, %d selected", len(candidates), selected)
    return candidates
