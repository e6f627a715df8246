"""A needs-review model's `curate-model` run waits for a maintainer (docs/operations.md), before it stages anything.

The run publishes the request (artifact `review-<org--name>`: the findings, the licence text's digest and link,
what approval would publish), saves its row `needs-review` with the request's expiry, and suspends with Prefect's
flow-run input (`ReviewInput`: approve or reject, a reason, the reviewer's name): its process exits and it holds
no worker. The Prefect UI shows the form on the suspended run; `curate review approve|reject` submits the same
input through the API (`resume_flow_run(flow_run_id, run_input=...)`). Resumed, the run starts again from the
top, gets the input back, records the decision (decisions/review.py) and goes on (approve) or ends (reject).
A run that cannot suspend (inline, no deployment) ends its row needs-review: the decision is made with
`curate review`, and the next run applies it. A decision recorded since screening is applied without asking.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Literal

from prefect import get_run_logger, suspend_flow_run
from prefect.artifacts import create_markdown_artifact
from prefect.context import FlowRunContext
from prefect.input import RunInput
from prefect.runtime import flow_run
from pydantic import Field

from decisions.review import REVIEW, ReviewSubject, decision_text, new_decision, request_expiry, reviewed
from registry.artifacts import artifact_key, cell, code
from registry.catalog import CatalogStore
from registry.schema import (
    ModelOutcome,
    ModelRef,
    ModelRow,
    ReviewDecision,
    ReviewVerdict,
    ScreeningReport,
    Verdict,
    model_slug,
    utcnow,
)
from registry.settings import Settings

if TYPE_CHECKING:
    from flows.model import RowTracker


class ReviewInput(RunInput):
    """The form of a suspended review request (Prefect UI: "Resume" on the flow run)."""

    decision: Literal["approve", "reject"] = Field(
        description="approve: curate and publish this revision; reject: final for this revision"
    )
    reason: str = Field(min_length=3, max_length=2000, description="why (kept in the catalog store and provenance)")
    reviewer: str = Field(min_length=1, max_length=200, description="your name, as it will be recorded")


def pause_key(ref: ModelRef) -> str:
    return f"review-{ref.revision[:12]}"


def review_artifact_key(repo_id: str) -> str:
    return artifact_key("review", model_slug(repo_id))


def request_markdown(report: ScreeningReport, expires: datetime | None) -> str:
    """What a reviewer needs: the findings, the licence (digest and link) and what approval would publish."""
    lic = report.license
    ref = report.ref
    lines = [
        f"# Review {code(ref.repo_id)} at `{ref.revision[:12]}`",
        "",
        f"- licence: {code(lic.spdx or lic.declared or 'unknown')} (declared {code(lic.declared or '-')})",
        f"- licence file: {code(lic.file or '-')}, sha256 `{lic.file_sha256 or '-'}`",
        f"- licence link: {cell(lic.url or '-')}",
        f"- approving publishes catalog entry `{model_slug(ref.repo_id)}` at revision `{ref.revision}` once it is "
        "staged and validated; rejecting is final for this revision",
        f"- the request expires {expires:%Y-%m-%d %H:%M} UTC" if expires else "- the request does not expire",
        "",
        "| severity | code | path | finding |",
        "|---|---|---|---|",
    ]
    for f in report.findings:
        lines.append(f"| {f.severity.value} | {code(f.code)} | {cell(f.path or '-')} | {cell(f.message)} |")
    if report.review:
        lines += ["", "To review:", *(f"- {cell(item)}" for item in report.review)]
    lines += [
        "",
        "Decide: **Resume** this flow run in the Prefect UI and fill in the form, or "
        f"`curate review approve {ref.repo_id} --reviewer NAME --reason TEXT` (or `reject`).",
    ]
    return "\n".join(lines)


def can_suspend() -> bool:
    """Only a deployment's flow run that is no subflow can be suspended (Prefect reschedules it on a worker)."""
    context = FlowRunContext.get()
    run = context.flow_run if context is not None else None
    return run is not None and run.deployment_id is not None and run.parent_task_run_id is None


def _screened(settings: Settings, ref: ModelRef) -> tuple[ScreeningReport | None, list[ReviewDecision]]:
    with CatalogStore.from_settings(settings) as store:
        return store.screening(ref, settings.policy_digest("screen")), store.reviews(ref.repo_id)


def record_decision(settings: Settings, report: ScreeningReport, decision: ReviewDecision) -> ScreeningReport:
    """Records the decision (once) and the screening it decides; returns that screening."""
    with CatalogStore.from_settings(settings) as store:
        stored = store.record_review(decision)
        decided = reviewed(report, [stored, *store.reviews(report.ref.repo_id)])
        store.record_screening(decided)
    return decided


def _ask(tracker: RowTracker, report: ScreeningReport, settings: Settings) -> ReviewDecision | None:
    """Publish the request and suspend for the decision; None when this run cannot suspend."""
    expires = request_expiry(utcnow(), settings.review)
    markdown = request_markdown(report, expires)
    items = "; ".join(report.review) or "see the review artifact"
    tracker.note("screen", f"needs review: {items}")
    create_markdown_artifact(
        key=review_artifact_key(report.ref.repo_id),
        markdown=markdown,
        description=f"What a maintainer must review before {report.ref.repo_id} is curated, and how to decide.",
    )
    where = "Resume its run" if can_suspend() else "`curate review`"
    tracker.save(
        stage="review",
        outcome=ModelOutcome.NEEDS_REVIEW,
        reason=f"waits for a maintainer until {expires:%Y-%m-%d %H:%M} UTC ({where})",
        review_expires_at=expires,
    )
    if not can_suspend():
        return None
    form = ReviewInput.with_initial_data(description=markdown)
    timeout = int(settings.review.expire_after.total_seconds())
    answer = suspend_flow_run(wait_for_input=form, timeout=timeout, key=pause_key(report.ref))
    verdict = ReviewVerdict.APPROVE if answer.decision == "approve" else ReviewVerdict.REJECT
    return new_decision(report, verdict, answer.reviewer, answer.reason, flow_run_id=str(flow_run.id))


def review_gate(tracker: RowTracker, ref: ModelRef, settings: Settings) -> ModelRow | None:
    """None when the model may go on (screened accepted, or approved); else its row, ended or waiting. Only a
    needs-review screening, or one a maintainer decided, is this gate's business."""
    report, decisions = _screened(settings, ref)
    if report is None or (report.verdict is not Verdict.NEEDS_REVIEW and not report.reviews):
        return None
    if report.verdict is Verdict.NEEDS_REVIEW:
        decision = ReviewSubject(report, tuple(decisions)).covering() or _ask(tracker, report, settings)
        if decision is None:
            return tracker.row
        report = record_decision(settings, report, decision)
    outcome = REVIEW.evaluate(ReviewSubject(report, report.reviews))
    said = "; ".join(decision_text(d) for d in report.reviews) or "; ".join(outcome.reasons)
    tracker.note("review", said)
    get_run_logger().info("%s: maintainer review: %s", ref, said)
    if outcome.accepted:
        tracker.save(stage="stage", outcome=ModelOutcome.RUNNING, review_expires_at=None)
        return None
    return tracker.save(
        stage="review", outcome=ModelOutcome.NOT_PUBLISHED, reason=f"review: {said}", review_expires_at=None
    )
