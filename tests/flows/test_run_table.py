"""A run's rows: the `curation-run` table and summary, and what a model's `validate` cell says (no I/O)."""

from __future__ import annotations

from flows.model import unchanged_since, validate_text
from flows.run_table import outcome_counts, run_markdown
from registry.schema import (
    Candidate,
    Decision,
    ModelOutcome,
    ModelRow,
    RunSummary,
    ScreeningReport,
    ValidationResult,
    ValidationVerdict,
    Verdict,
)
from tests.fixtures.catalog import sample_ref, sample_template

RUN, EARLIER, OLDEST = "20261207T030000Z-bbbbbbbbbb", "20261130T030000Z-aaaaaaaaaa", "20261123T030000Z-0000000000"


def result(verdict: ValidationVerdict, run_id: str, context_k: int = 40) -> ValidationResult:
    return ValidationResult(template=sample_template(sample_ref(), context_k), verdict=verdict, run_id=run_id)


def test_a_model_none_of_whose_cells_ran_says_since_when() -> None:
    kept = [result(ValidationVerdict.PASSED, EARLIER), result(ValidationVerdict.FAILED, OLDEST, 128)]
    assert unchanged_since(kept, RUN) == EARLIER
    assert validate_text(kept, RUN).startswith(f"unchanged since {EARLIER}: 1 passed")
    # a cell that could not run this time (no worker online) ran nothing
    assert unchanged_since([*kept, result(ValidationVerdict.NOT_VALIDATED, RUN, 8)], RUN) == EARLIER
    # a cell that ran this time: changed
    assert unchanged_since([*kept, result(ValidationVerdict.PASSED, RUN, 8)], RUN) is None
    assert unchanged_since([], RUN) is None


def test_the_run_table_has_a_row_per_model_and_the_summary_counts_them() -> None:
    ok, gone, screened_out = sample_ref("org/ok"), "org/gone", sample_ref("org/nc")
    candidates = [Candidate(ref=ok, rank=1), Candidate(ref=screened_out, rank=2)]
    reports = [
        ScreeningReport(ref=ok, verdict=Verdict.ACCEPTED),
        ScreeningReport(ref=screened_out, verdict=Verdict.REJECTED),
    ]
    rows = [
        ModelRow(run_id=RUN, repo_id=gone, stage="discover", outcome=ModelOutcome.FAILED, reason="discover: not found"),
        ModelRow(
            run_id=RUN,
            repo_id="org/ok",
            revision=ok.revision,
            stage="stage",
            outcome=ModelOutcome.FAILED,
            reason="stage: the Hub failed (HTTP 500) | retried",
            stages={"stage": "failed: the Hub failed (HTTP 500)"},
            attempts=2,
        ),
    ]
    counts = outcome_counts(candidates, reports, rows)
    assert counts == {"failed": 2, "screening rejected": 1}
    summary = RunSummary(run_id=RUN, status="completed", candidates=2, selected=2, outcomes=counts)
    table = run_markdown(summary, candidates, reports, rows, None)
    assert "- models: 2 failed, 1 screening rejected" in table
    ok_row = next(line for line in table.splitlines() if "`org/ok`" in line)
    assert ok_row.startswith("| `org/ok` | **failed at stage (attempt 2)** | stage | - | stage: the Hub failed")
    assert "\\| retried" in ok_row  # escaped, one row
    gone_row = next(line for line in table.splitlines() if "`org/gone`" in line)  # no candidate, still a row
    assert "| **failed at discover** | discover | - | discover: not found |" in gone_row
    assert Decision.SELECTED.value in ok_row
    nc_row = next(line for line in table.splitlines() if "`org/nc`" in line)
    assert "| **screening rejected** | screen |" in nc_row


def test_the_run_table_leads_with_the_outcome_links_the_run_and_keeps_sentences_short() -> None:
    ref = sample_ref("org/long")
    candidate = Candidate(ref=ref, rank=1, reason="trending #1; " + "a very long discovery sentence " * 20)
    row = ModelRow(
        run_id=RUN,
        repo_id="org/long",
        revision=ref.revision,
        stage="review",
        outcome=ModelOutcome.NEEDS_REVIEW,
        reason="waiting for a maintainer until 2026-12-06 03:00 UTC: decide in this flow run",
        stages={"review": "waiting"},
        flow_run_id="0b6c3f3e-0000-4000-8000-000000000001",
    )
    summary = RunSummary(run_id=RUN, status="completed")
    table = run_markdown(summary, [candidate], [], [row], None, ui_url="http://127.0.0.1:4200/")
    header = next(line for line in table.splitlines() if line.startswith("| model |"))
    assert [c.strip() for c in header.strip("|").split("|")][:5] == ["model", "outcome", "decided at", "run", "why"]
    long_row = next(line for line in table.splitlines() if "`org/long`" in line)
    assert "| **needs-review** | review |" in long_row
    assert "[run](http://127.0.0.1:4200/runs/flow-run/0b6c3f3e-0000-4000-8000-000000000001)" in long_row
    assert "…" in long_row and "a very long discovery sentence " * 4 not in long_row
