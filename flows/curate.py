"""The weekly pipeline and the per-model rerun: orchestration only, every rule lives in the packages below.

weekly-curation: discover -> screen -> build/refresh images -> one `curate-model` flow run per accepted model
(stage -> derive -> validate -> publish: flows/model.py) and per model waiting for a maintainer's review (its run
suspends for the decision: flows/review_gate.py, flows/review_requests.py), fanned out over the `curation` work
pool's workers and bounded by `orchestration.max_parallel_models` (flows/fanout.py) -> reconcile the catalog
(withdraw or flag entries whose repo disappeared, whose licence changed, or whose image now fails) -> export ->
audit a sample of published entries' regional copies (flows/audit.py). A model whose task the pipeline does not
serve ends "unsupported task: <task>" before staging (flows/task_gate.py). Published entries bound to a runtime
image that has since moved are curated again too: their cells are re-validated on the new digest, and the entry
moves to it only when they pass (decisions/publication.py `IMAGE_MOVE`).

Every stage is keyed by its own part of the policy and skips work already done at that key, so a week with no
upstream change redoes nothing. One model's failure is that model's row (`curation-run`), never the run's; the
run record is always finished with a summary, also when the run itself fails.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from prefect.settings import PREFECT_UI_URL

from decisions.reconciliation import diff_catalog, diff_markdown, status_changes
from decisions.selection import select_candidates
from flows.audit import audit_published_weights
from flows.build import build_runtime_images
from flows.discover import discover_models
from flows.fanout import ModelJob, curate_models
from flows.limits import ensure_limits
from flows.model import outcome_of
from flows.placement import pools_online
from flows.review_requests import review_jobs
from flows.run_table import outcome_counts, run_markdown
from flows.screen import screen_candidates
from flows.settings import settings_from
from flows.validate import current_image
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
    EntryStatus,
    ModelRef,
    RunSummary,
    ScreeningReport,
    StageName,
    StageOutcome,
    StageResult,
    Verdict,
)
from registry.settings import Settings
from validators.revalidation import stale_bindings

STAGE_ORDER = ("discover", "screen", "stage", "validate", "publish")
"""The stages `rerun-model` may start from (derive, between stage and validate, is redone with staging)."""


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
    outcomes, why = outcome_of(
        build_runtime_images(settings_overrides=overrides, fail_on_gate=False, return_state=True)
    )
    if outcomes is None:
        note(f"image build failed: {why}; templates on those runtimes cannot be validated this run")
    else:
        note(f"{len(outcomes)} runtime image(s) built or reused")


def audit_regional_copies(overrides: dict[str, Any] | None, note: Callable[[str], None]) -> None:
    """Re-hash a sample of published entries' regional copies (storage.audit_bytes_per_run) and repair what
    fails; a failed audit is reported, never a failed weekly run."""
    audit, why = outcome_of(audit_published_weights(overrides=overrides, return_state=True))
    if audit is None:
        note(f"regional copies audit failed: {why}")
    else:
        found = f"{audit.problems} problem(s), {audit.repaired} repaired"
        note(f"regional copies audit: {len(audit.entries)} entries, {found}")


@dataclass
class RunRecord:
    """What a run has gathered so far: enough to finish its record and artifact whenever it ends."""

    settings: Settings
    run_id: str
    kind: str
    candidates: list[Candidate] = field(default_factory=list)
    reports: list[ScreeningReport] = field(default_factory=list)
    diff: CatalogDiff | None = None

    def finish(self, failed: str = "") -> RunSummary:
        """Finish the run record with its summary and publish the run's artifacts."""
        with CatalogStore.from_settings(self.settings) as store:
            rows = store.model_rows(self.run_id)
            summary = store.finish_run(
                self.run_id,
                status="failed" if failed else "completed",
                candidates=len(self.candidates),
                selected=sum(1 for c in self.candidates if c.decision is Decision.SELECTED),
                outcomes=outcome_counts(self.candidates, self.reports, rows),
                reason=failed,
            )
        key = "curation-run" if self.kind == "weekly" else "rerun-model"
        ui_url = str(PREFECT_UI_URL.value() or "")
        create_markdown_artifact(
            key=key,
            markdown=run_markdown(summary, self.candidates, self.reports, rows, self.diff, ui_url=ui_url),
            description=f"Run {self.run_id}: how each model ended, the stage that decided it, and a link to its run.",
        )
        if self.diff is not None and self.kind == "weekly":
            title = f"Catalog diff, run {self.run_id}"
            create_markdown_artifact(
                key="catalog-diff",
                markdown=diff_markdown(self.diff, title=title),
                description=f"What run {self.run_id} changed in the catalog: added, updated, flagged, withdrawn, why.",
            )
        return summary


def _finished(record: RunRecord, work: Callable[[], None]) -> RunSummary:
    """Run `work`; finish the run record whatever happens (failed, with the reason, when `work` raises)."""
    try:
        work()
    except BaseException as exc:
        record.finish(failed=f"{type(exc).__name__}: {exc}"[:2000])
        raise
    return record.finish()


def image_move_jobs(settings: Settings, queued: set[str]) -> list[ModelJob]:
    """Entries bound to a runtime image that is no longer the runtime's current one: curated again, so their
    cells are re-validated on the new digest (the entry moves to it only when they pass)."""
    with CatalogStore.from_settings(settings) as store:
        entries = [e for e in store.entries() if e.status is not EntryStatus.WITHDRAWN]
        runtimes = {runtime for entry in entries for runtime in entry.images}
        current = {runtime: image for runtime in runtimes if (image := current_image(store, runtime)) is not None}
    jobs: list[ModelJob] = []
    for entry in entries:
        stale = stale_bindings(entry, current)
        if stale and entry.model.repo_id not in queued:
            note = "; ".join(binding.reason for binding in stale) + ": re-validated on the new image"
            jobs.append(ModelJob(entry.model, note=note))
    return jobs


def _weekly(
    record: RunRecord, overrides: dict[str, Any] | None, limit: int | None, previous: list[CatalogEntry]
) -> None:
    logger = get_run_logger()
    settings = record.settings
    ensure_limits(settings)  # before the first Hub call: Prefect remembers a tag without a limit for a while
    record.candidates = discover_models(overrides=overrides, limit=limit, run_id=record.run_id)
    selected = [c for c in record.candidates if c.decision is Decision.SELECTED]
    record.reports = screen_candidates(selected, overrides=overrides, run_id=record.run_id)
    accepted = [r.ref for r in record.reports if r.verdict is Verdict.ACCEPTED]
    refresh_images(overrides, logger.info)
    jobs = [ModelJob(ref) for ref in accepted]
    jobs += review_jobs(settings, record.reports, record.run_id)
    jobs += image_move_jobs(settings, {job.ref.repo_id for job in jobs})
    # The census waits up to validation.capacity_deadline_s for pools with no worker: only when a cell may run.
    curate_models(jobs, record.run_id, overrides, pools_online(settings) if jobs else {})
    record.diff = reconcile_catalog(settings, previous, record.candidates, record.reports)
    audit_regional_copies(overrides, logger.info)
    logger.info(
        "run %s: %d candidates, %d selected, catalog %s",
        record.run_id,
        len(record.candidates),
        len(selected),
        record.diff.counts,
    )


@flow(name="weekly-curation", log_prints=True)
def weekly_curation(overrides: dict[str, Any] | None = None, limit: int | None = None) -> RunSummary:
    """The weekly run: discover -> screen -> images -> one `curate-model` run per model -> reconcile the catalog."""
    settings = settings_from(overrides)
    with CatalogStore.from_settings(settings) as store:
        run = store.start_run(kind="weekly", flow_run_id=str(flow_run.id or ""))
        previous = store.entries()
    record = RunRecord(settings, run.run_id, "weekly")
    return _finished(record, lambda: _weekly(record, overrides, limit, previous))


def _screened(
    record: RunRecord, candidate: Candidate, overrides: dict[str, Any] | None, rescreen: bool
) -> ScreeningReport | None:
    with CatalogStore.from_settings(record.settings) as store:
        recorded = store.screening(candidate.ref, record.settings.policy_digest("screen"))
    if rescreen or recorded is None:
        reports = screen_candidates([candidate], overrides=overrides, run_id=record.run_id)
    else:
        reports = [recorded]
    record.reports = reports
    return reports[0] if reports else None


def _rerun(record: RunRecord, candidate: Candidate, from_stage: str, overrides: dict[str, Any] | None) -> None:
    settings = record.settings
    ensure_limits(settings)
    with CatalogStore.from_settings(settings) as store:
        store.record_candidates(record.run_id, [candidate])
        previous = store.entries()
    report = _screened(record, candidate, overrides, STAGE_ORDER.index(from_stage) <= STAGE_ORDER.index("screen"))
    if report is not None and report.verdict in (Verdict.ACCEPTED, Verdict.NEEDS_REVIEW):
        first = "stage" if STAGE_ORDER.index(from_stage) <= STAGE_ORDER.index("stage") else from_stage
        if first in ("stage", "validate"):
            refresh_images(overrides, get_run_logger().info)
        job = ModelJob(
            candidate.ref,
            first_stage=first,
            force_stage=from_stage == "stage",
            force_validation=from_stage in ("stage", "validate"),
            review=report.verdict is Verdict.NEEDS_REVIEW,
        )
        curate_models([job], record.run_id, overrides, pools_online(settings))
    elif report is not None:
        _record_not_curated(settings, candidate.ref, report, record.run_id)
    record.diff = reconcile_catalog(settings, previous, [candidate], record.reports, only_repos={candidate.repo_id})


@flow(name="rerun-model", log_prints=True)
def rerun_model(
    repo_id: str,
    revision: str | None = None,
    from_stage: str = "discover",
    overrides: dict[str, Any] | None = None,
) -> Candidate:
    """Curate one model by hand at `revision` (default: the current head), whatever its trending rank.

    `from_stage` (discover, screen, stage, validate, publish) redoes that stage and the ones after it, reusing
    the recorded results of the earlier ones at this (revision, policy); from `validate` on, every cell runs
    again even when its inputs did not change.
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
    record = RunRecord(settings, run.run_id, "rerun", candidates=[candidate])
    _finished(record, lambda: _rerun(record, candidate, from_stage, overrides))
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
