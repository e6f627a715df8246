"""The weekly pipeline and the per-model rerun: orchestration only, every rule lives in the packages below.

weekly-curation: discover -> screen -> build/refresh images -> per accepted model (task check -> stage -> validate
-> publish; a task the pipeline does not serve ends "unsupported task: <task>" before staging)
-> reconcile the catalog (withdraw or flag entries whose repo disappeared, whose licence changed, or whose
image now fails) -> export -> audit a sample of published entries' regional copies (flows/audit.py). Every
stage is keyed by (repo, revision, policy digest) and skips work already done at that key, so a week with no
upstream change redoes nothing. A model that fails a stage never stops the others: each stage's outcome is
recorded per model and shown in the `curation-run` artifact.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.client.schemas.objects import State
from prefect.runtime import flow_run

from decisions.reconciliation import diff_catalog, diff_markdown, status_changes
from decisions.selection import select_candidates
from flows.audit import audit_published_weights
from flows.build import build_runtime_images
from flows.discover import discover_models
from flows.publish import publish_model
from flows.screen import screen_candidates
from flows.settings import settings_from
from flows.stage import stage_weights
from flows.task_gate import unsupported_task
from flows.validate import validate_model
from registry.artifacts import cell, code
from registry.catalog import CatalogStore
from registry.catalog_diff import CatalogDiff, observe_upstream
from registry.catalog_export import export_catalog
from registry.discovery import resolve_one
from registry.errors import RepoNotFoundError
from registry.hub import hub_source
from registry.schema import (
    Candidate,
    CatalogEntry,
    Decision,
    ModelRef,
    RunSummary,
    ScreeningReport,
    Severity,
    StageName,
    StageOutcome,
    StageResult,
    ValidationResult,
    ValidationVerdict,
    Verdict,
)
from registry.settings import Settings

STAGE_ORDER = ("discover", "screen", "stage", "validate", "publish")


def _outcome(state: State[Any]) -> tuple[Any, str]:
    """(result, "") for a completed subflow, (None, why) for one that failed."""
    if state.is_completed():
        return state.result(), ""
    return None, str(state.message or state.name)


def _screen_cell(report: ScreeningReport | None) -> str:
    if report is None:
        return "-"
    blocking = [f.code for f in report.findings if f.severity.rank >= Severity.MEDIUM.rank]
    return f"{report.verdict.value}: {'; '.join(blocking) or 'no blocking finding'}"


def _validate_cell(results: list[ValidationResult] | None) -> str:
    if results is None:
        return "-"
    passed = [r.template.id for r in results if r.verdict is ValidationVerdict.PASSED]
    others = [f"{r.template.id} {r.verdict.value}" for r in results if r.verdict is not ValidationVerdict.PASSED]
    return f"{len(passed)} passed" + (f" ({'; '.join(others)})" if others else "")


class ModelProgress:
    """What each stage said about each model in this run, for the `curation-run` artifact."""

    def __init__(self) -> None:
        self.cells: dict[ModelRef, dict[str, str]] = {}

    def note(self, ref: ModelRef, stage: str, text: str) -> None:
        self.cells.setdefault(ref, {})[stage] = text

    def markdown(self, summary: RunSummary, candidates: list[Candidate], diff: CatalogDiff | None) -> str:
        stages = ("screen", "stage", "validate", "publish")
        lines = [
            f"# Curation run `{summary.run_id}`",
            "",
            f"- candidates: {summary.candidates}, selected: {summary.selected}",
        ]
        if diff is not None:
            lines.append("- catalog: " + ", ".join(f"{n} {k}" for k, n in diff.counts.items()))
        lines += [
            "",
            "| repository | revision | discover | " + " | ".join(stages) + " |",
            "|---|---|---|" + "---|" * len(stages),
        ]
        for c in candidates:
            cells = self.cells.get(c.ref, {})
            row = [code(c.repo_id), code(c.revision[:12]), cell(f"{c.decision.value}: {c.reason}")]
            row += [cell(cells.get(stage, "-")) for stage in stages]
            lines.append("| " + " | ".join(row) + " |")
        return "\n".join(lines)


def curate_accepted(
    refs: list[ModelRef],
    overrides: dict[str, Any] | None,
    progress: ModelProgress,
    *,
    first_stage: str = "stage",
    force_stage: bool = False,
) -> None:
    """stage -> validate -> publish for each model; a failure ends that model's chain, never the others'.

    `first_stage` skips the stages before it (their recorded results are used); `force_stage` restages even
    when the weights are already staged at this revision.
    """
    for ref in refs:
        if STAGE_ORDER.index(first_stage) <= STAGE_ORDER.index("stage"):
            unsupported, why = _outcome(unsupported_task(overrides, ref, return_state=True))
            if unsupported or why:
                progress.note(ref, "stage", unsupported or f"failed: could not tell the model's task: {why}")
                continue
            staged, why = _outcome(
                stage_weights(
                    ref.repo_id,
                    revision=ref.revision,
                    overrides=overrides,
                    force=force_stage,
                    return_state=True,
                )
            )
            progress.note(ref, "stage", f"staged to {', '.join(sorted(staged.regions))}" if staged else why)
            if staged is None:
                continue
        if STAGE_ORDER.index(first_stage) <= STAGE_ORDER.index("validate"):
            results, why = _outcome(validate_model(ref.repo_id, ref.revision, overrides=overrides, return_state=True))
            progress.note(ref, "validate", _validate_cell(results) if results is not None else f"failed: {why}")
            if results is None:
                continue
        published, why = _outcome(
            publish_model(ref.repo_id, ref.revision, overrides=overrides, export=False, return_state=True)
        )
        if published is None:
            progress.note(ref, "publish", f"failed: {why}")
        else:
            result: StageResult = published
            progress.note(ref, "publish", result.outcome.value + (f": {result.reason}" if result.reason else ""))


def reconcile_catalog(
    settings: Settings,
    previous: list[CatalogEntry],
    candidates: list[Candidate],
    reports: list[ScreeningReport],
    *,
    only_repos: set[str] | None = None,
) -> CatalogDiff:
    """Withdraw or flag entries by what the Hub shows now, apply the status changes, diff, export.

    `only_repos` limits the reconciliation to those repositories (a rerun of one model).
    """

    def scoped(entries: list[CatalogEntry]) -> list[CatalogEntry]:
        return [e for e in entries if only_repos is None or e.model.repo_id in only_repos]

    previous = scoped(previous)
    source = hub_source(settings.hub)

    def head(repo_id: str) -> str | None:
        try:
            return source.model_info(repo_id).sha
        except RepoNotFoundError:
            return None

    try:
        upstream = observe_upstream(
            previous,
            {c.repo_id: c.revision for c in candidates},
            {r.ref.repo_id: r for r in reports},
            head,
        )
    finally:
        source.close()
    with CatalogStore.from_settings(settings) as store:
        first = diff_catalog(previous, scoped(store.entries()), upstream)
        with store.transaction():
            for entry_id, status, reason in status_changes(first):
                store.set_entry_status(entry_id, status, reason)
        current = scoped(store.entries())
    export_catalog(settings)
    return diff_catalog(previous, current, upstream)


def refresh_images(overrides: dict[str, Any] | None, note: Callable[[str], None]) -> None:
    """Build (or reuse, when the recipe is unchanged) every runtime image the policy lists."""
    outcomes, why = _outcome(build_runtime_images(settings_overrides=overrides, fail_on_gate=False, return_state=True))
    if outcomes is None:
        note(f"image build failed: {why}; templates on those runtimes cannot be validated this run")
    else:
        note(f"{len(outcomes)} runtime image(s) built or reused")


def audit_regional_copies(overrides: dict[str, Any] | None, note: Callable[[str], None]) -> None:
    """Issue 16: re-hash a sample of published entries' regional copies (storage.audit_bytes_per_run) and repair
    what fails; a failed audit is reported, never a failed weekly run."""
    audit, why = _outcome(audit_published_weights(overrides=overrides, return_state=True))
    if audit is None:
        note(f"regional copies audit failed: {why}")
    else:
        found = f"{audit.problems} problem(s), {audit.repaired} repaired"
        note(f"regional copies audit: {len(audit.entries)} entries, {found}")


@flow(name="weekly-curation", log_prints=True)
def weekly_curation(overrides: dict[str, Any] | None = None, limit: int | None = None) -> RunSummary:
    """The weekly run: discover -> screen -> images -> stage -> validate -> publish -> reconcile the catalog."""
    logger = get_run_logger()
    settings = settings_from(overrides)
    with CatalogStore.from_settings(settings) as store:
        run = store.start_run(kind="weekly", flow_run_id=str(flow_run.id or ""))
        previous = store.entries()
    candidates = discover_models(overrides=overrides, limit=limit, run_id=run.run_id)
    selected = [c for c in candidates if c.decision is Decision.SELECTED]
    reports = screen_candidates(selected, overrides=overrides, run_id=run.run_id)
    progress = ModelProgress()
    for report in reports:
        progress.note(report.ref, "screen", _screen_cell(report))
    accepted = [r.ref for r in reports if r.verdict is Verdict.ACCEPTED]
    if accepted:
        refresh_images(overrides, logger.info)
    curate_accepted(accepted, overrides, progress)
    diff = reconcile_catalog(settings, previous, candidates, reports)
    audit_regional_copies(overrides, logger.info)
    with CatalogStore.from_settings(settings) as store:
        summary = store.finish_run(run.run_id, status="completed", candidates=len(candidates), selected=len(selected))
    create_markdown_artifact(key="curation-run", markdown=progress.markdown(summary, candidates, diff))
    create_markdown_artifact(key="catalog-diff", markdown=diff_markdown(diff, title=f"Catalog diff, run {run.run_id}"))
    logger.info(
        "run %s: %d candidates, %d selected, catalog %s", run.run_id, len(candidates), len(selected), diff.counts
    )
    return summary


@flow(name="rerun-model", log_prints=True)
def rerun_model(
    repo_id: str,
    revision: str | None = None,
    from_stage: str = "discover",
    overrides: dict[str, Any] | None = None,
) -> Candidate:
    """Curate one model by hand at `revision` (default: the current head), whatever its trending rank.

    `from_stage` (discover, screen, stage, validate, publish) redoes that stage and the ones after it, reusing
    the recorded results of the earlier ones at this (revision, policy).
    """
    if from_stage not in STAGE_ORDER:
        raise ValueError(f"from_stage must be one of {', '.join(STAGE_ORDER)}, not {from_stage!r}")
    settings = settings_from(overrides)
    source = hub_source(settings.hub)
    try:
        candidate = select_candidates([resolve_one(source, repo_id, revision)], settings.discovery)[0]
    finally:
        source.close()
    with CatalogStore.from_settings(settings) as store:
        run = store.start_run(kind="rerun", flow_run_id=str(flow_run.id or ""))
        store.record_candidates(run.run_id, [candidate])
        previous = store.entries()
        recorded = store.screening(candidate.ref, settings.policy_digest())
    progress = ModelProgress()
    if STAGE_ORDER.index(from_stage) <= STAGE_ORDER.index("screen") or recorded is None:
        reports = screen_candidates([candidate], overrides=overrides, run_id=run.run_id)
    else:
        reports = [recorded]
    report = reports[0] if reports else None
    progress.note(candidate.ref, "screen", _screen_cell(report))
    if report is not None and report.verdict is Verdict.ACCEPTED:
        first = "stage" if STAGE_ORDER.index(from_stage) <= STAGE_ORDER.index("stage") else from_stage
        if first in ("stage", "validate"):
            refresh_images(overrides, get_run_logger().info)
        curate_accepted([candidate.ref], overrides, progress, first_stage=first, force_stage=from_stage == "stage")
    elif report is not None:
        _record_not_curated(settings, candidate.ref, report, run.run_id)
    diff = reconcile_catalog(settings, previous, [candidate], reports, only_repos={candidate.repo_id})
    with CatalogStore.from_settings(settings) as store:
        summary = store.finish_run(run.run_id, status="completed", candidates=1, selected=1)
    create_markdown_artifact(key="rerun-model", markdown=progress.markdown(summary, [candidate], diff))
    return candidate


def _record_not_curated(settings: Settings, ref: ModelRef, report: ScreeningReport, run_id: str) -> None:
    with CatalogStore.from_settings(settings) as store:
        store.record_stage(
            StageResult(
                ref=ref,
                stage=StageName.PUBLISH,
                outcome=StageOutcome.SKIPPED,
                reason=f"screening verdict {report.verdict.value}",
                policy_digest=settings.policy_digest(),
                run_id=run_id,
            )
        )
