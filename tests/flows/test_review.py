"""Issue 17's "Done when", through the Prefect API the UI uses: a needs-review model's `curate-model` run (a real
deployment run by a real process worker) suspends for a decision; an approval submitted as flow-run input
resumes it and the model is published with the approval in its provenance; a new revision whose licence file
changed asks again, and a rejection from `curate review reject` ends it.

The chain's records come from the `publish_chain` fixture (staged weights in Azurite, a signed image, a passed
validation), so the resumed run goes straight to publishing (`first_stage="publish"`); its screening is
replaced by a needs-review one (`LicenseRef-llama3`). While the first request waits, a real browser (Debian's
chromium, headless, 1500 px) opens the Prefect UI: the suspended run's Resume form (its fields, the request above
them) and the `curation-run` table (outcome, deciding stage and the run link within view); screenshots stay
under the test's tmp_path. Runtime: ~1 min (a Prefect worker, a UI server, five flow-run processes).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.deployments.runner import RunnerDeployment
from typer.testing import CliRunner

from flows.cli.app import app
from flows.fanout import ModelJob, curate_models, settled
from flows.model import curate_model
from flows.placement import pool_has_worker
from flows.review_gate import review_artifact_key
from flows.review_requests import review_jobs
from flows.run_table import run_markdown
from registry import finding_codes as codes
from registry.schema import (
    Finding,
    LicenseReference,
    ModelOutcome,
    ModelRef,
    ModelRow,
    ReviewVerdict,
    ScreeningReport,
    Severity,
    Verdict,
    utcnow,
)
from tests.fixtures.browser import chromium_page
from tests.fixtures.catalog import sha40
from tests.fixtures.publishing import PublishChain
from tests.flows.test_weekly import latest_artifact

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

POOL = "curation-review-test"
REPO_ROOT = Path(__file__).resolve().parents[2]


def needs_review(chain: PublishChain, ref: ModelRef, licence_text: str) -> ScreeningReport:
    """Record a needs-review screening of `ref` (a llama3 licence on the review list) at the screen policy."""
    report = ScreeningReport(
        ref=ref,
        verdict=Verdict.NEEDS_REVIEW,
        findings=(
            Finding(
                scanner="licenses",
                code=codes.LICENSE_REVIEW,
                severity=Severity.MEDIUM,
                message="LicenseRef-llama3 is on the review list",
            ),
        ),
        license=LicenseReference(
            spdx="LicenseRef-llama3",
            declared="other",
            name="llama3",
            url="https://huggingface.co/meta-llama/Meta-Llama-3-8B/blob/main/LICENSE",
            file="LICENSE",
            file_sha256=hashlib.sha256(licence_text.encode()).hexdigest(),
        ),
        review=("license.needs-review: LicenseRef-llama3 is on the review list (licenses.review)",),
        policy_digest=chain.settings.policy_digest("screen"),
    )
    with chain.store() as store:
        store.record_screening(report)
    return report


def start_model_run(chain: PublishChain, ref: ModelRef, run_id: str) -> FlowRun:
    parameters = {
        "repo_id": ref.repo_id,
        "revision": ref.revision,
        "run_id": run_id,
        "overrides": chain.overrides,
        "first_stage": "publish",
    }
    run = run_deployment(f"curate-model/{POOL}", parameters=parameters, timeout=0, as_subflow=False)
    assert isinstance(run, FlowRun)
    return settled(run, 300)


def resume(run: FlowRun, answer: dict[str, str]) -> FlowRun:
    """What the UI's "Resume" form does: POST /flow_runs/{id}/resume with the run input."""
    with get_client(sync_client=True) as client:
        result = client.resume_flow_run(run.id, run_input=answer)
    assert result.status.value == "ACCEPT", result
    return settled(run, 300)


def run_input(run: FlowRun, part: str) -> Any:
    """What the UI renders above and as the form: the suspended run's input `description` and `schema`."""
    assert run.state is not None and run.state.state_details.run_input_keyset is not None
    key = run.state.state_details.run_input_keyset[part]

    async def read() -> Any:
        async with get_client() as client:
            return await client.read_flow_run_input(UUID(str(run.id)), key)

    return json.loads(asyncio.run(read()))


RESUME_BUTTON = "Array.from(document.querySelectorAll('button')).find(b => b.innerText.trim() === 'Resume')"
FORM_LABELS = (
    "Array.from(document.querySelectorAll('[role=dialog] .schema-form-property__label')).map(e => e.innerText)"
)
HEADERS = (  # each column's name, and whether it is within the table's visible width
    "Array.from(document.querySelectorAll('th')).map(th => [th.innerText.trim(),"
    " th.getBoundingClientRect().right <= th.closest('.p-table').getBoundingClientRect().right])"
)


def publish_run_table(chain: PublishChain, run_id: str, ui: str) -> UUID:
    """The `curation-run` artifact of this run as the weekly run writes it (its rows, a link to each model's run)."""
    with chain.store() as store:
        rows = store.model_rows(run_id)
        summary = store.finish_run(run_id, status="completed", candidates=0, selected=0, outcomes={})
    return run_table_flow(run_markdown(summary, [], [], rows, None, ui_url=ui))


@flow(name="review-test-run-table")
def run_table_flow(markdown: str) -> UUID:
    return create_markdown_artifact(key="curation-run", markdown=markdown, description="the run table under test")


def check_in_a_browser(run: FlowRun, run_id: str, chain: PublishChain, work: Path, ui: str) -> None:
    """In a real browser at 1500 px: the suspended run's Resume form shows the request and the typed fields, and
    the `curation-run` table leads with the outcome, the deciding stage and a link to the model's run."""
    artifact = publish_run_table(chain, run_id, ui)
    with chromium_page(work) as page:
        page.navigate(f"{ui}/runs/flow-run/{run.id}")
        page.wait_for(f"!!{RESUME_BUTTON}")
        page.evaluate(f"{RESUME_BUTTON}.click()")
        assert page.wait_for(f"{FORM_LABELS}.length && {FORM_LABELS}") == ["Decision", "Reason", "Reviewer"]
        dialog = page.evaluate("document.querySelector('[role=dialog]').innerText")
        assert "approve" in dialog and "reject" in dialog and "LicenseRef-llama3" in dialog, dialog
        page.screenshot(work / "resume-form.png")
        page.navigate(f"{ui}/artifacts/artifact/{artifact}")
        headers = page.wait_for(f"{HEADERS}.length && {HEADERS}")
        names = [name for name, _ in headers]
        assert names[:4] == ["model", "outcome", "decided at", "run"], names
        assert all(visible for _, visible in headers[:4]), headers
        link = page.evaluate("Array.from(document.querySelectorAll('td a')).map(a => a.href).join(' ')")
        assert f"/runs/flow-run/{run.id}" in link, link
        page.screenshot(work / "curation-run.png")
    assert (work / "resume-form.png").stat().st_size > 0 and (work / "curation-run.png").stat().st_size > 0


def test_a_needs_review_model_waits_for_a_decision_in_its_own_run(
    publish_chain: PublishChain,
    process_workers: Callable[[str], Callable[[], subprocess.Popen[bytes]]],
    prefect_ui: str,
    tmp_path: Path,
) -> None:
    chain = publish_chain
    deployment = curate_model.to_deployment(
        name=POOL, work_pool_name=POOL, job_variables={"working_dir": str(REPO_ROOT)}
    )
    assert isinstance(deployment, RunnerDeployment)
    start_worker = process_workers(POOL)
    deployment.apply()
    start_worker()
    assert pool_has_worker(POOL, 90.0)
    with chain.store() as store:
        run_id = store.start_run(kind="review-test").run_id
    first = needs_review(chain, chain.ref, "LLAMA 3 COMMUNITY LICENSE AGREEMENT v1")

    # ---- the run suspends: its row waits, the request artifact and the form are there.
    run = start_model_run(chain, chain.ref, run_id)
    assert run.state is not None and run.state.name == "Suspended", run.state
    with chain.store() as store:
        row = store.model_row(run_id, chain.ref.repo_id)
        assert row is not None and row.outcome is ModelOutcome.NEEDS_REVIEW and row.review_expires_at is not None
        assert row.flow_run_id == str(run.id) and store.entries() == []
    request = latest_artifact(review_artifact_key(chain.ref.repo_id))
    assert first.license.file_sha256 is not None and first.license.file_sha256 in request
    assert "approving publishes" in request and "license.needs-review" in request
    schema = run_input(run, "schema")
    assert {"decision", "reason", "reviewer"} <= set(schema["properties"]), schema
    assert schema["properties"]["decision"]["enum"] == ["approve", "reject"], schema
    description = run_input(run, "description")
    assert "LicenseRef-llama3" in description and first.license.file_sha256 in description
    check_in_a_browser(run, run_id, chain, tmp_path, prefect_ui)

    # ---- an approval submitted as flow-run input resumes it; the entry carries the approval.
    done = resume(run, {"decision": "approve", "reason": "llama3 terms allow redistribution", "reviewer": "ada"})
    assert done.state is not None and done.state.is_completed(), done.state
    with chain.store() as store:
        row = store.model_row(run_id, chain.ref.repo_id)
        (entry,) = store.entries()
        (decision,) = store.reviews(chain.ref.repo_id)
    assert row is not None and row.outcome is ModelOutcome.PUBLISHED, row
    assert entry.model == chain.ref and entry.provenance.approvals == (decision,)
    assert decision.reviewer == "ada" and decision.verdict is ReviewVerdict.APPROVE
    assert decision.scope.license_file_sha256 == first.license.file_sha256
    assert entry.provenance.flow_run_ids["review"] == str(run.id)

    # ---- a new revision whose licence file changed asks again; a rejection (`curate review reject`, which submits
    # the same input to the suspended run) ends it, final for that revision.
    newer = ModelRef(repo_id=chain.ref.repo_id, revision=sha40("review", "newer"))
    needs_review(chain, newer, "LLAMA 3 COMMUNITY LICENSE AGREEMENT v2 (new acceptable-use policy)")
    again = start_model_run(chain, newer, run_id)
    assert again.state is not None and again.state.name == "Suspended", again.state
    data = ["--data-dir", str(chain.settings.data_dir)]
    argv = [*data, "review", "reject", newer.repo_id, "--reviewer", "bob", "--reason", "new acceptable-use clause"]
    result = CliRunner().invoke(app, [*argv, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["resumed"] is True
    ended = settled(again, 300)
    assert ended.state is not None and ended.state.is_completed(), ended.state
    with chain.store() as store:
        row = store.model_row(run_id, chain.ref.repo_id)
        screening = store.screening(newer, chain.settings.policy_digest("screen"))
        (entry,) = store.entries()
    assert row is not None and row.outcome is ModelOutcome.NOT_PUBLISHED and "rejected by bob" in row.reason, row
    assert screening is not None and screening.verdict is Verdict.REJECTED
    assert entry.model == chain.ref

    # ---- the weekly fan-out dispatches a needs-review model and goes on once its run is suspended; the next
    # weekly run does not ask again while a request waits; once it expired, the request is closed
    # (its suspended run cancelled, its row says so) and the model is dispatched to ask again.
    third = ModelRef(repo_id=chain.ref.repo_id, revision=sha40("review", "third"))
    report = needs_review(chain, third, "LLAMA 3 COMMUNITY LICENSE AGREEMENT v3")
    deployed = {**chain.overrides, "orchestration": {"dispatch": "deployment", "pool": POOL}}
    (dispatched,) = fan_out(third, run_id, deployed)
    assert dispatched.outcome is ModelOutcome.NEEDS_REVIEW and dispatched.flow_run_id, dispatched  # not waited for
    with get_client(sync_client=True) as client:
        waiting = client.read_flow_run(UUID(dispatched.flow_run_id))
    assert waiting.state is not None and waiting.state.name == "Suspended", waiting.state
    next_run = store_run(chain)
    assert review_jobs(chain.settings, [report], next_run) == []
    with chain.store() as store:
        row = store.model_row(next_run, third.repo_id)
        assert row is not None and row.outcome is ModelOutcome.NEEDS_REVIEW and str(waiting.id) in row.reason
        for asked in store.awaiting_review(third.repo_id):  # the request, and the next run's row that points at it
            store.record_model_row(asked.model_copy(update={"review_expires_at": utcnow() - timedelta(minutes=1)}))
    later = store_run(chain)
    (job,) = review_jobs(chain.settings, [report], later)
    assert job.ref == third and job.review
    with chain.store() as store:
        closed = store.model_row(run_id, third.repo_id)
    assert closed is not None and closed.outcome is ModelOutcome.NOT_PUBLISHED
    assert "expired unanswered" in closed.reason and later in closed.reason
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(waiting.id).state
    assert state is not None and state.is_cancelled(), state


@flow(name="review-test-fan-out")
def fan_out(ref: ModelRef, run_id: str, overrides: dict[str, Any]) -> list[ModelRow]:
    """What the weekly run does with a needs-review model: dispatch it, and not wait once it is suspended."""
    return curate_models([ModelJob(ref, review=True)], run_id, overrides, {})


def store_run(chain: PublishChain) -> str:
    with chain.store() as store:
        return store.start_run(kind="review-test").run_id
