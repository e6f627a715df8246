"""The `curation-run` artifact: one row per model of a run, one column per stage, and how each model ended.

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
    ModelRow,
    RunSummary,
    ScreeningReport,
    Severity,
    Verdict,
)

CHAIN_COLUMNS = ("stage", "validate", "publish")


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


def _result(row: ModelRow | None) -> str:
    if row is None:
        return "-"
    where = f" at {row.stage}" if row.outcome.value == "failed" else ""
    retried = f" (attempt {row.attempts})" if row.attempts > 1 else ""
    return f"{row.outcome.value}{where}{retried}: {row.reason[:300]}" if row.reason else row.outcome.value + where


def run_markdown(
    summary: RunSummary,
    candidates: list[Candidate],
    reports: list[ScreeningReport],
    rows: list[ModelRow],
    diff: CatalogDiff | None,
) -> str:
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
        "| repository | revision | discover | screen | " + " | ".join(CHAIN_COLUMNS) + " | result |",
        "|---|---|---|---|" + "---|" * len(CHAIN_COLUMNS) + "---|",
    ]
    seen: set[str] = set()
    for c in candidates:
        seen.add(c.repo_id)
        row = by_repo.get(c.repo_id)
        cells = [code(c.repo_id), code(c.revision[:12]), cell(f"{c.decision.value}: {c.reason}")]
        cells.append(cell(screen_text(screened.get(c.repo_id))))
        cells += [cell(row.stages.get(stage, "-") if row else "-") for stage in CHAIN_COLUMNS]
        cells.append(cell(_result(row)))
        lines.append("| " + " | ".join(cells) + " |")
    for row in rows:
        if row.repo_id in seen:
            continue
        revision = code(row.revision[:12]) if row.revision else "-"
        cells = [code(row.repo_id), revision, cell(row.stages.get("discover", "-")), "-"]
        cells += [cell(row.stages.get(stage, "-")) for stage in CHAIN_COLUMNS]
        cells.append(cell(_result(row)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
