"""Stage 2 flow: screen each selected candidate (licences, custom code, formats, headers, secrets, access).

Orchestration only; every rule lives in `scanners`. One task per candidate, mapped in parallel; the tasks
carry the `hub` tag, whose Prefect concurrency limit (created from `hub.concurrency` when missing) bounds Hub
calls across a run. Results are cached by (repo, revision, policy digest, scanner version, token present, the
repository's maintainer review decisions): a rerun at the same revision reads the persisted report under
`data_dir` and makes no Hub call; a new review decision screens again and applies it (decisions/review.py).
Every report is recorded in the catalog store, with a table artifact of all decisions and a markdown report per
rejected model.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task, unmapped
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.client.schemas.objects import State
from prefect.context import TaskRunContext
from prefect.filesystems import LocalFileSystem
from prefect.runtime import flow_run

from decisions.review import decision_text, decisions_digest, reviewed
from flows.limits import ensure_limits
from flows.retries import only_retryable
from flows.settings import settings_from
from registry.artifacts import artifact_key, cell, code
from registry.catalog import CatalogStore
from registry.hub import hub_source
from registry.quotas import HUB_TAG
from registry.schema import (
    Candidate,
    Decision,
    ModelRef,
    ReviewDecision,
    ScreeningReport,
    StageName,
    StageOutcome,
    StageResult,
    Verdict,
    model_slug,
)
from registry.settings import Settings
from scanners.policy import describe, disposition
from scanners.screen import screen_repo

# Bump when the scanners change what they conclude: it is part of the cache key.
SCANNER_VERSION = "1"
CACHE_EXPIRATION = timedelta(days=30)

_OUTCOME = {
    Verdict.ACCEPTED: StageOutcome.OK,
    Verdict.NEEDS_REVIEW: StageOutcome.NEEDS_REVIEW,
    Verdict.REJECTED: StageOutcome.REJECTED,
}


def cache_key(repo_id: str, revision: str, policy_digest: str, has_token: bool, reviews: str = "") -> str:
    """The cache key of one screening: same repo, revision, policy, token presence and review decisions (their
    digest) -> same report."""
    raw = f"screen|{SCANNER_VERSION}|{repo_id}|{revision}|{policy_digest}|token={has_token}|reviews={reviews}"
    return "screen-" + hashlib.sha256(raw.encode()).hexdigest()[:32]


def review_decisions(settings: Settings, repo_id: str) -> list[ReviewDecision]:
    with CatalogStore.from_settings(settings) as store:
        return store.reviews(repo_id)


def _task_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    candidate: Candidate = parameters["candidate"]
    settings = settings_from(parameters.get("overrides"))
    reviews = decisions_digest(review_decisions(settings, candidate.repo_id))
    return cache_key(
        candidate.repo_id, candidate.revision, settings.policy_digest("screen"), settings.hub.token is not None, reviews
    )


def result_storage(settings: Settings) -> str:
    """A saved LocalFileSystem block over `<data_dir>/prefect-results/screen` (Prefect needs it saved)."""
    path = Path(settings.data_dir).resolve() / "prefect-results" / "screen"
    path.mkdir(parents=True, exist_ok=True)
    name = "screen-results-" + hashlib.sha256(str(path).encode()).hexdigest()[:12]
    LocalFileSystem(basepath=str(path)).save(name, overwrite=True)
    return f"local-file-system/{name}"


@task(
    name="screen-repo",
    tags=[HUB_TAG],
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=only_retryable,
    cache_key_fn=_task_cache_key,
    cache_expiration=CACHE_EXPIRATION,
    persist_result=True,
    task_run_name="screen {candidate.ref.repo_id}",
)
def screen_candidate(candidate: Candidate, overrides: dict[str, Any] | None = None) -> ScreeningReport:
    """Screen one candidate at its pinned revision (Hub reads only: headers and small files), then apply the
    maintainer review decision that covers it, if any."""
    settings = settings_from(overrides)
    source = hub_source(settings.hub)
    try:
        report = screen_repo(source, candidate.repo_id, candidate.revision, settings)
    finally:
        source.close()
    return reviewed(report, review_decisions(settings, candidate.repo_id))


def reasons_of(report: ScreeningReport) -> list[str]:
    """One line per finding that made the verdict what it is (a maintainer's decision first, then rejections,
    then review items)."""
    decided = [f"maintainer review: {decision_text(d)}" for d in report.reviews]
    rejecting = [describe(f) for f in report.findings if disposition(f) is Verdict.REJECTED]
    return decided + rejecting + list(report.review)


def result_rows(reports: list[ScreeningReport]) -> list[dict[str, Any]]:
    return [
        {
            "repo": r.ref.repo_id,
            "revision": r.ref.revision[:12],
            "verdict": r.verdict.value,
            "licence": r.license.spdx or r.license.declared or "-",
            "formats": ", ".join(r.weight_formats) or "-",
            "reasons": "; ".join(reasons_of(r)) or "-",
            "bytes_read": r.bytes_read,
        }
        for r in reports
    ]


def rejection_markdown(report: ScreeningReport) -> str:
    """The report of one rejected repository: every finding, one line each, and the licence reference."""
    lic = report.license
    lines = [
        f"# Screening rejected {code(report.ref.repo_id)}",
        "",
        f"- revision: `{report.ref.revision}`",
        f"- verdict: **{report.verdict.value}**",
        f"- licence: {lic.spdx or '-'} (declared: {lic.declared or '-'}; file: {lic.file or '-'})",
        f"- weight formats: {', '.join(report.weight_formats) or '-'}",
        f"- policy digest: `{report.policy_digest[:16]}`; bytes read from the Hub: {report.bytes_read}",
        "",
        "| severity | code | path | finding |",
        "|---|---|---|---|",
    ]
    order = {"critical": 0, "high": 1, "medium": 2, "low": 3, "info": 4}
    for f in sorted(report.findings, key=lambda f: order.get(f.severity.value, 5)):
        lines.append(f"| {f.severity.value} | {code(f.code)} | {cell(f.path or '-')} | {cell(f.message)} |")
    return "\n".join(lines)


def _screen_all(
    selected: list[Candidate], overrides: dict[str, Any] | None, settings: Settings
) -> tuple[list[ScreeningReport], list[tuple[Candidate, str]]]:
    """(reports, (candidate, why) of every screening that could not run), in the candidates' order."""
    ensure_limits(settings)  # the `hub` tag's limit among them, before the first screening asks for it
    runner = screen_candidate.with_options(result_storage=result_storage(settings))
    futures = runner.map(selected, unmapped(overrides))
    futures.wait()
    states: list[State[ScreeningReport]] = [f.state for f in futures]
    reports: list[ScreeningReport] = []
    failures: list[tuple[Candidate, str]] = []
    for candidate, state in zip(selected, states, strict=True):
        if state.is_completed():
            reports.append(state.result())
        else:
            failures.append((candidate, str(state.message or state.name)))
    return reports, failures


def _record(
    settings: Settings, reports: list[ScreeningReport], failures: list[tuple[Candidate, str]], run_id: str | None
) -> None:
    with CatalogStore.from_settings(settings) as store:
        for report in reports:
            store.record_screening(report)
            store.record_stage(
                StageResult(
                    ref=report.ref,
                    stage=StageName.SCREEN,
                    outcome=_OUTCOME[report.verdict],
                    reason="; ".join(reasons_of(report))[:2000],
                    policy_digest=report.policy_digest,
                    run_id=run_id,
                    payload=report.model_dump(mode="json"),
                )
            )
        for candidate, message in failures:
            store.record_stage(
                StageResult(
                    ref=ModelRef(repo_id=candidate.repo_id, revision=candidate.revision),
                    stage=StageName.SCREEN,
                    outcome=StageOutcome.FAILED,
                    reason=f"screening could not run: {message}"[:2000],
                    policy_digest=settings.policy_digest("screen"),
                    run_id=run_id,
                )
            )


def _publish_artifacts(reports: list[ScreeningReport]) -> None:
    create_table_artifact(
        key="screening-results",
        table=result_rows(reports),
        description="Stage 2: every screened model's verdict, licence and the reasons behind it.",
    )
    for report in reports:
        if report.verdict is Verdict.REJECTED:
            create_markdown_artifact(
                key=artifact_key("screening-rejected", model_slug(report.ref.repo_id)),
                markdown=rejection_markdown(report),
                description=f"Why {report.ref.repo_id} was rejected at screening.",
            )


@flow(name="screen", log_prints=True)
def screen_candidates(
    candidates: list[Candidate],
    overrides: dict[str, Any] | None = None,
    run_id: str | None = None,
) -> list[ScreeningReport]:
    """Screen every selected candidate in parallel, persist each report and publish the artifacts."""
    logger = get_run_logger()
    settings = settings_from(overrides)
    selected = [c for c in candidates if c.decision is Decision.SELECTED]
    if not selected:
        logger.info("no selected candidates to screen")
        return []
    reports, failures = _screen_all(selected, overrides, settings)
    _record(settings, reports, failures, run_id or str(flow_run.id or "") or None)
    _publish_artifacts(reports)
    counts = {v: sum(1 for r in reports if r.verdict is v) for v in Verdict}
    logger.info(
        "screened %d: %d accepted, %d need review, %d rejected, %d failed",
        len(reports),
        counts[Verdict.ACCEPTED],
        counts[Verdict.NEEDS_REVIEW],
        counts[Verdict.REJECTED],
        len(failures),
    )
    return reports
