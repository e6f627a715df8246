"""The `curation-run` artifact: one row per model of a run, leading with how it ended and the stage that decided it.

Read at a glance (a browser at 1500 px shows the first columns): outcome, deciding stage, a link to the model's
own flow run (its logs, its artifacts, a review form when it waits for one), a short why; then what each stage
said, cut short, and discovery's reason and the revision last.

Rows come from the run's candidates (discovery's decision, screening's verdict) and the models' `ModelRow`s in
the catalog store (what each stage of their chain said, the stage it ended at, and why). Models that are no
candidate of the run (a requested repository that did not resolve) get a row too.
"""

from __future__ import annotations

from collections import Counter

from registry.artifacts import cell, code
from registry.catalog_diff import CatalogDiff
from registry.schema import (
    Candidate,
    Decision,
    ModelOutcome,
    ModelRow,
    RunSummary,
    ScreeningReport,
    Severity,
    Verdict,
)

CHAIN_COLUMNS = ("review", "stage", "validate", "publish")
COLUMNS = ("model", "outcome", "decided at", "run", "why", *CHAIN_COLUMNS, "screen", "discover", "revision")


def screen_text(report: ScreeningReport | None) -> str:
    if report is None:
        return "-"
    blocking = [f.code for f in report.findings if f.severity.rank >= Severity.MEDIUM.rank]
    return f"{report.verdict.value}: {'; '.join(blocking) or 'no blocking finding'}"


def outcome_counts(candidates: list[Candidate], reports: list[ScreeningReport], rows: list[ModelRow]) -> dict[str, int]:
    """The run's summary: how many models ended each way (screened-out ones by their screening verdict)."""
    counts: Counter[str] = Counter(row.outcome.value for row in rows)
    queued = {row.repo_id for row in rows}
    counts.update(
        f"screening {r.verdict.value}"
        for r in reports
        if r.verdict is not Verdict.ACCEPTED and not (r.verdict is Verdict.NEEDS_REVIEW and r.ref.repo_id in queued)
    )
    skipped = sum(1 for c in candidates if c.decision is Decision.SKIPPED)
    skipped -= sum(1 for c in candidates if c.decision is Decision.SKIPPED and c.repo_id in queued)
    if skipped:
        counts["skipped at discovery"] = skipped
    return dict(sorted(counts.items()))


SHORT = 120
"""A table cell's sentence is cut at this many characters (the full text is in the model's run and artifacts)."""


def short(text: str, limit: int = SHORT) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _result(row: ModelRow | None) -> str:
    if row is None:
        return "-"
    where = f" at {row.stage}" if row.outcome.value == "failed" else ""
    retried = f" (attempt {row.attempts})" if row.attempts > 1 else ""
    return f"{row.outcome.value}{where}{retried}: {row.reason[:300]}" if row.reason else row.outcome.value + where


def decided(candidate: Candidate | None, report: ScreeningReport | None, row: ModelRow | None) -> tuple[str, str]:
    """(outcome, the stage that decided it) of one model in the run."""
    if row is not None:
        done = row.outcome in (ModelOutcome.PUBLISHED, ModelOutcome.UNCHANGED)
        return _result(row).split(": ", 1)[0], "publish" if done else row.stage
    if candidate is not None and candidate.decision is Decision.SKIPPED:
        return "skipped", "discover"
    if report is not None and report.verdict is not Verdict.ACCEPTED:
        return f"screening {report.verdict.value}", "screen"
    return "-", "-"


def _why(candidate: Candidate | None, report: ScreeningReport | None, row: ModelRow | None) -> str:
    if row is not None:
        return row.reason
    if candidate is not None and candidate.decision is Decision.SKIPPED:
        return candidate.reason
    return screen_text(report) if report is not None else ""


def flow_run_link(flow_run_id: str | None, ui_url: str) -> str:
    """A markdown link to the model's flow run in the Prefect UI (its logs, artifacts and, when it waits for a
    review, the form); `ui_url` "" gives a link relative to the UI that shows the artifact."""
    if not flow_run_id:
        return "-"
    return f"[run]({ui_url.rstrip('/')}/runs/flow-run/{flow_run_id})"


def _row(
    repo_id: str, revision: str | None, c: Candidate | None, r: ScreeningReport | None, row: ModelRow | None, ui: str
) -> str:
    outcome, stage = decided(c, r, row)
    cells = [code(repo_id), f"**{cell(outcome)}**", cell(stage), flow_run_link(row.flow_run_id if row else None, ui)]
    cells.append(cell(short(_why(c, r, row))))
    cells += [cell(short(row.stages.get(s, "-"), 80)) if row else "-" for s in CHAIN_COLUMNS]
    cells.append(cell(short(screen_text(r), 80)) if r is not None else "-")
    discover = f"{c.decision.value}: {c.reason}" if c is not None else (row.stages.get("discover", "-") if row else "-")
    cells += [cell(short(discover, 80)), code(revision[:12]) if revision else "-"]
    return "| " + " | ".join(cells) + " |"


def run_markdown(
    summary: RunSummary,
    candidates: list[Candidate],
    reports: list[ScreeningReport],
    rows: list[ModelRow],
    diff: CatalogDiff | None,
    ui_url: str = "",
) -> str:
    """The run's summary, then one row per model: its outcome and the stage that decided it first, a link to its
    flow run and a short why, then what each stage said (short), discovery's reason and the revision last."""
    by_repo = {row.repo_id: row for row in rows}
    screened = {r.ref.repo_id: r for r in reports}
    lines = [
        f"# Curation run `{summary.run_id}`: {summary.status}",
        "",
        f"- candidates: {summary.candidates}, selected: {summary.selected}",
        "- models: " + (", ".join(f"{n} {k}" for k, n in summary.outcomes.items()) or "none"),
    ]
    if summary.reason:
        lines.append(f"- the run failed: {cell(summary.reason)}")
    if diff is not None:
        lines.append("- catalog: " + ", ".join(f"{n} {k}" for k, n in diff.counts.items()))
    lines += [
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    seen: set[str] = set()
    for c in candidates:
        seen.add(c.repo_id)
        lines.append(_row(c.repo_id, c.revision, c, screened.get(c.repo_id), by_repo.get(c.repo_id), ui_url))
    for row in rows:
        if row.repo_id not in seen:
            lines.append(_row(row.repo_id, row.revision, None, None, row, ui_url))
    return "\n".join(lines)
