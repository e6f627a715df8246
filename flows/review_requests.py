"""The weekly run's side of review requests: ask once, close what nobody answered in time, ask again.

For each model that screened needs-review (and no decision covers yet), the run looks at the requests of earlier
runs (rows `needs-review`): one whose flow run is still suspended and has not expired keeps waiting (this run's
row says where, and the model is not dispatched again); one that expired (`REQUEST_EXPIRY`), or whose run ended
without a decision, or that asked about an older revision, is closed: its suspended run is cancelled, its row
says why, and the model is dispatched to ask again.
"""

from __future__ import annotations

from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.exceptions import ObjectNotFound
from prefect.states import Cancelled

from decisions.review import expired
from flows.fanout import ModelJob
from registry.catalog import CatalogStore
from registry.schema import ModelOutcome, ModelRow, ScreeningReport, Verdict, utcnow
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
