"""The weekly run's side of review requests: ask once, close what nobody answered in time, ask again.

For each model that screened needs-review (and no decision covers yet), the run looks at the requests of earlier
runs (rows `needs-review`): one whose flow run is still suspended and has not expired keeps waiting (this run's
row says where, and the model is not dispatched again); one that expired (`REQUEST_EXPIRY`), or whose run ended
without a decision, or that asked about an older revision, is closed: its suspended run is cancelled, its row
says why, and the model is dispatched to ask again.

`curate review` reads the open requests here (`open_requests`) and submits a decision to a suspended run as its
flow-run input (`resume_with`), exactly as the Prefect UI's form does.
"""

from __future__ import annotations

from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.responses import SetStateStatus
from prefect.exceptions import ObjectNotFound
from prefect.states import Cancelled

from decisions.review import ReviewSubject, expired
from flows.fanout import ModelJob
from registry.catalog import CatalogStore
from registry.review_records import ReviewRequest
from registry.schema import (
    LicenseReference,
    ModelOutcome,
    ModelRef,
    ModelRow,
    ReviewDecision,
    ScreeningReport,
    Verdict,
    model_slug,
    utcnow,
)
from registry.settings import Settings


def suspended_run(flow_run_id: str | None) -> FlowRun | None:
    """The flow run, when it exists and is suspended (paused)."""
    if not flow_run_id:
        return None
    with get_client(sync_client=True) as client:
        try:
            run = client.read_flow_run(UUID(flow_run_id))
        except (ObjectNotFound, ValueError):
            return None
    return run if run.state is not None and run.state.is_paused() else None


def close_request(settings: Settings, row: ModelRow, why: str) -> ModelRow:
    """Cancel the request's suspended run (if it still is) and end its row not-published, saying why."""
    run = suspended_run(row.flow_run_id)
    if run is not None:
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(run.id, Cancelled(message=why), force=True)
    closed = row.model_copy(
        update={
            "outcome": ModelOutcome.NOT_PUBLISHED,
            "reason": f"review: {why}",
            "stages": {**row.stages, "review": why},
            "review_expires_at": None,
            "updated_at": utcnow(),
        }
    )
    with CatalogStore.from_settings(settings) as store:
        store.record_model_row(closed)
    return closed


def _still_waiting(settings: Settings, report: ScreeningReport, run_id: str) -> ModelRow | None:
    """The earlier request that still waits for this revision, after closing every other one."""
    with CatalogStore.from_settings(settings) as store:
        pending = [row for row in store.awaiting_review(report.ref.repo_id) if row.run_id != run_id]
    waiting: ModelRow | None = None
    for row in pending:
        why = expired(row)
        if row.revision != report.ref.revision:
            why = f"superseded by revision {report.ref.revision[:12]}; asked again in run {run_id}"
        elif why is not None:
            why = f"{why}; asked again in run {run_id}"
        elif waiting is None and suspended_run(row.flow_run_id) is not None:
            waiting = row
            continue
        else:
            why = f"its run ended without a decision; asked again in run {run_id}"
        close_request(settings, row, why)
    return waiting


def review_jobs(settings: Settings, reports: list[ScreeningReport], run_id: str) -> list[ModelJob]:
    """A job for each needs-review model whose request is not already waiting; a row for each that is."""
    jobs: list[ModelJob] = []
    for report in reports:
        if report.verdict is not Verdict.NEEDS_REVIEW:
            continue
        waiting = _still_waiting(settings, report, run_id)
        if waiting is None:
            jobs.append(ModelJob(report.ref, review=True))
            continue
        expires = f"{waiting.review_expires_at:%Y-%m-%d %H:%M} UTC" if waiting.review_expires_at else "never"
        why = f"still waiting for a maintainer in flow run {waiting.flow_run_id} (asked in run {waiting.run_id})"
        row = ModelRow(
            run_id=run_id,
            repo_id=report.ref.repo_id,
            revision=report.ref.revision,
            stage="review",
            outcome=ModelOutcome.NEEDS_REVIEW,
            reason=f"{why}; expires {expires}",
            stages={"review": why},
            flow_run_id=waiting.flow_run_id,
            review_expires_at=waiting.review_expires_at,
        )
        with CatalogStore.from_settings(settings) as store:
            store.record_model_row(row)
    return jobs


def resume_with(run: FlowRun, decision: ReviewDecision) -> str | None:
    """Submit `decision` as the suspended run's input (what the UI's form posts); None once resumed, else why not."""
    answer = {"decision": decision.verdict.value, "reason": decision.reason, "reviewer": decision.reviewer}
    with get_client(sync_client=True) as client:
        result = client.resume_flow_run(run.id, run_input=answer)
    if result.status is SetStateStatus.ACCEPT:
        return None
    details = getattr(result.details, "reason", None)
    return str(details or result.status.value)


def request_of(row: ModelRow, ref: ModelRef, report: ScreeningReport | None) -> ReviewRequest:
    return ReviewRequest(
        ref=ref,
        run_id=row.run_id,
        flow_run_id=row.flow_run_id,
        asked_at=row.updated_at,
        expires_at=row.review_expires_at,
        expired=expired(row) is not None,
        license=report.license if report is not None else LicenseReference(),
        finding_codes=tuple(sorted(set(report.codes))) if report is not None else (),
        review=report.review if report is not None else (),
        entry_id=model_slug(row.repo_id),
    )


def open_requests(settings: Settings, repo_id: str | None = None) -> list[tuple[ModelRow, ReviewRequest]]:
    """Every open request (newest row per revision that no decision covers yet), newest first."""
    found: dict[tuple[str, str | None], tuple[ModelRow, ReviewRequest]] = {}
    with CatalogStore.from_settings(settings) as store:
        for row in store.awaiting_review(repo_id):
            if (row.repo_id, row.revision) in found or row.revision is None:
                continue
            ref = ModelRef(repo_id=row.repo_id, revision=row.revision)
            report = store.screening(ref, settings.policy_digest("screen"))
            decided = report is not None and ReviewSubject(report, tuple(store.reviews(ref.repo_id))).covering()
            if not decided:
                found[(row.repo_id, row.revision)] = (row, request_of(row, ref, report))
    return list(found.values())
