"""The weekly pipeline and the per-model rerun: orchestration only, every rule lives in the packages below.

Stages run so far: 1 discover, 2 screen, 4 stage weights. Later stages are added as they land (docs/status.md).
A model that fails a stage never stops the others: each stage's outcome is recorded per model.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from flows.discover import discover_models
from flows.screen import screen_candidates
from flows.settings import settings_from
from flows.stage import stage_weights
from registry.catalog import CatalogStore
from registry.discovery import resolve_one
from registry.hub import hub_source
from registry.schema import (
    Candidate,
    Decision,
    ModelRef,
    RunSummary,
    ScreeningReport,
    Severity,
    StagedWeights,
    Verdict,
)


def _screen_cell(report: ScreeningReport | None) -> str:
    if report is None:
        return "-"
    blocking = [f.code for f in report.findings if f.severity.rank >= Severity.MEDIUM.rank]
    return f"{report.verdict.value}: {'; '.join(blocking) or 'no blocking finding'}"


def stage_accepted(
    reports: list[ScreeningReport], overrides: dict[str, Any] | None
) -> dict[ModelRef, StagedWeights | str]:
    """Stage the weights of every accepted model; a failure is recorded (by the stage flow) and reported here."""
    outcomes: dict[ModelRef, StagedWeights | str] = {}
    for report in reports:
        if report.verdict is not Verdict.ACCEPTED:
            continue
        state = stage_weights(report.ref.repo_id, revision=report.ref.revision, overrides=overrides, return_state=True)
        if state.is_completed():
            outcomes[report.ref] = state.result()
        else:
            outcomes[report.ref] = str(state.message or state.name)
    return outcomes


def _stage_cell(outcome: StagedWeights | str | None) -> str:
    if outcome is None:
        return "-"
    if isinstance(outcome, str):
        return f"failed: {outcome}"
    return f"staged to {', '.join(sorted(outcome.regions))}"


def _run_markdown(
    summary: RunSummary,
    candidates: list[Candidate],
    reports: list[ScreeningReport],
    staged: dict[ModelRef, StagedWeights | str],
) -> str:
    selected = [c for c in candidates if c.decision is Decision.SELECTED]
    by_ref = {r.ref: r for r in reports}
    counts = {v: sum(r.verdict is v for r in reports) for v in Verdict}
    lines = [
        f"# Curation run `{summary.run_id}`",
        "",
        f"- candidates: {len(candidates)}",
        f"- selected for curation: {len(selected)}",
        f"- screening: {counts[Verdict.ACCEPTED]} accepted, {counts[Verdict.NEEDS_REVIEW]} need review, "
        f"{counts[Verdict.REJECTED]} rejected",
        f"- weights staged: {sum(not isinstance(o, str) for o in staged.values())} of {len(staged)} accepted",
        "",
        "| repository | revision | 1 discover | 2 screen | 4 stage |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| `{c.repo_id}` | `{c.revision[:12]}` | {c.decision.value}: {c.reason} | {_screen_cell(by_ref.get(c.ref))} "
        f"| {_stage_cell(staged.get(c.ref))} |"
        for c in candidates
    ]
    return "\n".join(lines)


@flow(name="weekly-curation", log_prints=True)
def weekly_curation(overrides: dict[str, Any] | None = None, limit: int | None = None) -> RunSummary:
    """discover -> screen -> stage (later: build -> validate -> publish) for the trending models."""
    logger = get_run_logger()
    settings = settings_from(overrides)
    with CatalogStore.from_settings(settings) as store:
        run = store.start_run(kind="weekly", flow_run_id=str(flow_run.id or ""))
    candidates = discover_models(overrides=overrides, limit=limit, run_id=run.run_id)
    selected = [c for c in candidates if c.decision is Decision.SELECTED]
    reports = screen_candidates(selected, overrides=overrides, run_id=run.run_id)
    staged = stage_accepted(reports, overrides)
    with CatalogStore.from_settings(settings) as store:
        summary = store.finish_run(run.run_id, status="completed", candidates=len(candidates), selected=len(selected))
    create_markdown_artifact(key="curation-run", markdown=_run_markdown(summary, candidates, reports, staged))
    logger.info("run %s: %d candidates, %d selected", summary.run_id, len(candidates), len(selected))
    return summary


@flow(name="rerun-model", log_prints=True)
def rerun_model(
    repo_id: str, revision: str | None = None, overrides: dict[str, Any] | None = None
) -> Candidate:
    """Curate one model by hand at `revision` (default: the current head), whatever its trending rank.

    Runs every stage implemented so far for that model (pinning, screening, staging).
    """
    settings = settings_from(overrides)
    source = hub_source(settings.hub)
    try:
        candidate = resolve_one(source, repo_id, revision)
    finally:
        source.close()
    with CatalogStore.from_settings(settings) as store:
        run = store.start_run(kind="rerun", flow_run_id=str(flow_run.id or ""))
        store.record_candidates(run.run_id, [candidate])
    reports = screen_candidates([candidate], overrides=overrides, run_id=run.run_id)
    staged = stage_accepted(reports, overrides)
    with CatalogStore.from_settings(settings) as store:
        store.finish_run(run.run_id, status="completed", candidates=1, selected=1)
    verdict = _screen_cell(reports[0] if reports else None)
    create_markdown_artifact(
        key="rerun-model",
        markdown=f"# Rerun `{candidate.repo_id}`\n\npinned to `{candidate.revision}`: {candidate.reason}\n\n"
        f"Screening: {verdict}\n\nWeights: {_stage_cell(staged.get(candidate.ref))}",
    )
    return candidate
