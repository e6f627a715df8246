"""`curate review list|show|approve|reject`: a maintainer's review of models that screened needs-review, from the
shell; the same decision the Prefect UI's form on the model's suspended `curate-model` run takes (docs/operations.md).

`approve` / `reject` record the decision in the catalog store (reviewer, time, reason, exactly what it covers:
decisions/review.py) and, when the model's run is suspended waiting for it, submit it as that run's flow-run
input, which resumes it (PREFECT_API_URL, or the local stack's). Otherwise the next run applies it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from flows.cli.context import settings
from flows.cli.exit_codes import ExitCode
from flows.cli.output import JsonOption, console, emit, emit_rows, fail
from flows.cli.params import repo_id_argument, revision_option
from registry.review_records import ReviewOutcome, ReviewRequest, ReviewShow
from registry.schema import ModelRow, ReviewVerdict, ScreeningReport, Verdict
from registry.settings import Settings

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun

review_app = typer.Typer(
    help="Review models that screened needs-review: list, show, approve, reject.", no_args_is_help=True
)

_REVIEWER = typer.Option(..., "--reviewer", help="Your name, as the decision records it.")
_REASON = typer.Option(..., "--reason", help="Why: kept in the catalog store and, when approved, in provenance.")


def requests_table(requests: list[ReviewRequest]) -> Table:
    table = Table(title="Models waiting for a maintainer's review")
    for column in ("repository", "revision", "licence", "to review", "flow run", "expires"):
        table.add_column(column, overflow="fold")
    for r in requests:
        expires = "-" if r.expires_at is None else f"{r.expires_at:%Y-%m-%d %H:%M}"
        table.add_row(
            escape(r.ref.repo_id),
            r.ref.revision[:12],
            escape(r.license.spdx or r.license.declared or "-"),
            escape("; ".join(r.review) or ", ".join(r.finding_codes) or "-"),
            r.flow_run_id or "-",
            f"[red]expired {expires}[/]" if r.expired else expires,
        )
    return table


@review_app.command("list")
def list_requests(as_json: bool = JsonOption) -> None:
    """Every open review request, newest first."""
    from flows.review_requests import open_requests

    requests = [request for _, request in open_requests(settings())]
    emit_rows(requests, as_json, "no model is waiting for a review", lambda: requests_table(requests))


def _render_show(shown: ReviewShow) -> None:
    if shown.request is None:
        console.print(f"[dim]{escape(shown.repo_id)}: no open review request[/]")
    else:
        r = shown.request
        lic = r.license
        console.print(f"[bold]{escape(r.ref.repo_id)}[/] @ {r.ref.revision[:12]}: [yellow]needs review[/]")
        console.print(
            f"licence {escape(lic.spdx or lic.declared or '-')}, file {escape(lic.file or '-')} sha256 "
            f"{lic.file_sha256 or '-'}, link {escape(lic.url or '-')}"
        )
        for item in r.review:
            console.print(f"  - {escape(item)}", soft_wrap=True)
        console.print(
            f"approval would publish entry {r.entry_id} once staged and validated; flow run "
            f"{r.flow_run_id or '-'}; expires {r.expires_at or '-'}"
        )
    from decisions.review import decision_text

    for decision in shown.decisions:
        console.print(f"{decision.scope.ref.revision[:12]}: {escape(decision_text(decision))}", soft_wrap=True)


@review_app.command("show")
def show(repo_id: str = repo_id_argument(), as_json: bool = JsonOption) -> None:
    """One model's open review request (findings, licence digest and link) and every decision on it."""
    from flows.review_requests import open_requests
    from registry.catalog import CatalogStore

    current = settings()
    requests = open_requests(current, repo_id)
    with CatalogStore.from_settings(current) as store:
        decisions = tuple(store.reviews(repo_id))
    shown = ReviewShow(repo_id=repo_id, request=requests[0][1] if requests else None, decisions=decisions)
    emit(shown, as_json, lambda: _render_show(shown))


def _to_decide(current: Settings, repo_id: str, revision: str | None) -> tuple[ScreeningReport, ModelRow | None]:
    """The needs-review screening to decide on (the open request's, else the newest one), and its request row."""
    from flows.review_requests import open_requests
    from registry.catalog import CatalogStore

    found = [(row, r) for row, r in open_requests(current, repo_id) if revision in (None, r.ref.revision)]
    rows = [row for row, _ in found]
    policy = current.policy_digest("screen")
    with CatalogStore.from_settings(current) as store:
        if found:
            report = store.screening(found[0][1].ref, policy)
        else:
            screened = [s for s in store.screenings(repo_id) if s.policy_digest == policy]
            report = next((s for s in screened if revision in (None, s.ref.revision)), None)
    if report is None:
        raise fail(
            f"{repo_id} has no screening to review; run `curate run` or `curate rerun {repo_id}` first",
            ExitCode.NOT_FOUND,
        )
    if report.verdict is not Verdict.NEEDS_REVIEW:
        from decisions.review import decision_text

        why = "; ".join(decision_text(d) for d in report.reviews) or f"it screened {report.verdict.value}"
        raise fail(f"{report.ref} has nothing to review: {why}", ExitCode.FAILED)
    return report, rows[0] if rows else None


def _decide(repo_id: str, revision: str | None, verdict: ReviewVerdict, reviewer: str, reason: str) -> ReviewOutcome:
    from decisions.review import decision_text, new_decision
    from flows.review_gate import record_decision
    from flows.review_requests import close_request, resume_with

    current = settings()
    if not reviewer.strip() or len(reason.strip()) < 3:
        raise fail("give --reviewer NAME and a --reason of a few words", ExitCode.USAGE)
    report, row = _to_decide(current, repo_id, revision)
    run = _waiting_run(row)
    decision = new_decision(report, verdict, reviewer, reason, flow_run_id=str(run.id) if run else None)
    decided = record_decision(current, report, decision)
    stored = decided.reviews[0] if decided.reviews else decision
    if run is not None:
        why = resume_with(run, stored)
        if why is None:
            return ReviewOutcome(decision=stored, flow_run_id=str(run.id), resumed=True, note="its run goes on")
        note = f"its run {run.id} could not resume ({why}); the next weekly run applies the decision"
    else:
        note = f"no run is waiting; the next weekly run (or `curate rerun {repo_id}`) applies it"
    if row is not None:
        close_request(current, row, f"{decision_text(stored)}; {note}")
    return ReviewOutcome(decision=stored, flow_run_id=row.flow_run_id if row else None, note=note)


def _waiting_run(row: ModelRow | None) -> FlowRun | None:
    """The request's suspended run, looked up when a Prefect API is configured (PREFECT_API_URL, or the local
    stack's); without one the decision is only recorded."""
    from prefect.settings import PREFECT_API_URL

    from flows.review_requests import suspended_run

    if row is None or not PREFECT_API_URL.value():
        return None
    return suspended_run(row.flow_run_id)


def _render_outcome(outcome: ReviewOutcome) -> None:
    from decisions.review import decision_text

    d = outcome.decision
    colour = "green" if d.verdict is ReviewVerdict.APPROVE else "red"
    console.print(f"[{colour}]{escape(str(d.scope.ref))}: {escape(decision_text(d))}[/]", soft_wrap=True)
    console.print(escape(outcome.note))


@review_app.command("approve")
def approve(
    repo_id: str = repo_id_argument(),
    revision: str | None = revision_option("The revision to approve (default: the open request's)."),
    reviewer: str = _REVIEWER,
    reason: str = _REASON,
    as_json: bool = JsonOption,
) -> None:
    """Approve a model waiting for review: its run goes on (or the next run curates it)."""
    outcome = _decide(repo_id, revision, ReviewVerdict.APPROVE, reviewer, reason)
    emit(outcome, as_json, lambda: _render_outcome(outcome))


@review_app.command("reject")
def reject(
    repo_id: str = repo_id_argument(),
    revision: str | None = revision_option("The revision to reject (default: the open request's)."),
    reviewer: str = _REVIEWER,
    reason: str = _REASON,
    as_json: bool = JsonOption,
) -> None:
    """Reject a model waiting for review: final for that revision (a new revision is asked again)."""
    outcome = _decide(repo_id, revision, ReviewVerdict.REJECT, reviewer, reason)
    emit(outcome, as_json, lambda: _render_outcome(outcome))


def register(app: typer.Typer) -> None:
    app.add_typer(review_app, name="review")
