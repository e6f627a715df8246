"""`curate review list|show|approve|reject` on a catalog store holding one open request (no run waiting: the
decision is recorded, the request closed, the screening decided); JSON shapes of docs/cli.md and exit codes.
The path through a suspended run is tests/flows/test_review.py."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from flows.cli.app import app
from flows.cli.exit_codes import ExitCode
from registry.catalog import CatalogStore
from registry.schema import (
    LicenseReference,
    ModelOutcome,
    ModelRef,
    ModelRow,
    ScreeningReport,
    Verdict,
    utcnow,
)
from registry.settings import load_settings
from tests.fixtures.catalog import sha40, sha64

runner = CliRunner()
REPO = "curation-samples/llama3-licensed-model"


def open_request(data_dir: Path, seed: int = 1) -> ModelRef:
    settings = load_settings(data_dir=data_dir)
    ref = ModelRef(repo_id=REPO, revision=sha40(REPO, seed))
    report = ScreeningReport(
        ref=ref,
        verdict=Verdict.NEEDS_REVIEW,
        license=LicenseReference(spdx="LicenseRef-llama3", file="LICENSE", file_sha256=sha64("llama3")),
        review=("license.needs-review: LicenseRef-llama3 is on the review list",),
        policy_digest=settings.policy_digest("screen"),
    )
    with CatalogStore.from_settings(settings) as store:
        run = store.start_run()
        store.record_screening(report)
        store.record_model_row(
            ModelRow(
                run_id=run.run_id,
                repo_id=REPO,
                revision=ref.revision,
                stage="review",
                outcome=ModelOutcome.NEEDS_REVIEW,
                review_expires_at=utcnow(),
            )
        )
    return ref


def curate(data_dir: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["--data-dir", str(data_dir), *args])
    return result.exit_code, result.output


def test_list_show_and_approve_record_the_decision_and_close_the_request(tmp_path: Path) -> None:
    ref = open_request(tmp_path)
    code, out = curate(tmp_path, "review", "list", "--json")
    assert code == ExitCode.OK, out
    (request,) = json.loads(out)
    assert request["ref"] == {"repo_id": REPO, "revision": ref.revision} and request["expired"] is True
    assert request["license"]["file_sha256"] == sha64("llama3")
    assert request["entry_id"].endswith("llama3-licensed-model")
    code, out = curate(tmp_path, "review", "show", REPO)
    assert code == ExitCode.OK and "needs review" in out and "LicenseRef-llama3" in out, out

    code, out = curate(tmp_path, "review", "approve", REPO, "--reviewer", "ada", "--reason", "terms ok", "--json")
    assert code == ExitCode.OK, out
    outcome = json.loads(out)
    assert outcome["decision"]["verdict"] == "approve" and outcome["decision"]["reviewer"] == "ada"
    assert outcome["resumed"] is False and "next weekly run" in outcome["note"]
    assert json.loads(curate(tmp_path, "review", "list", "--json")[1]) == []
    settings = load_settings(data_dir=tmp_path)
    with CatalogStore.from_settings(settings) as store:
        screening = store.screening(ref, settings.policy_digest("screen"))
        (row,) = store.model_rows(store.runs()[0].run_id)
    assert screening is not None and screening.verdict is Verdict.ACCEPTED and screening.reviews
    assert row.outcome is ModelOutcome.NOT_PUBLISHED and "approved by ada" in row.reason
    shown = json.loads(curate(tmp_path, "review", "show", REPO, "--json")[1])
    assert shown["request"] is None and shown["decisions"][0]["reason"] == "terms ok"

    code, out = curate(tmp_path, "review", "reject", REPO, "--reviewer", "bob", "--reason", "too late")
    assert code == ExitCode.FAILED and "nothing to review" in out and "approved by ada" in out, out


def test_errors_are_one_line_with_their_exit_code(tmp_path: Path) -> None:
    open_request(tmp_path)
    code, out = curate(tmp_path, "review", "approve", "acme/unknown", "--reviewer", "ada", "--reason", "fine")
    assert code == ExitCode.NOT_FOUND and "no screening to review" in out, out
    code, out = curate(tmp_path, "review", "approve", REPO, "--reviewer", "ada")
    assert code == ExitCode.USAGE, out
    code, out = curate(tmp_path, "review", "reject", REPO, "--reviewer", " ", "--reason", "x")
    assert code == ExitCode.USAGE, out
