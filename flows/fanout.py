"""Fan a run's models out: one `curate-model` flow run per model, at most `orchestration.max_parallel_models` at
once, and wait for all of them (docs/scale.md).

Modes (`orchestration.dispatch`): `deployment` runs each model as a flow run of the `curate-model/<pool>`
deployment, picked up by any worker of the `curation` pool on any machine; `inline` runs them one after another
as subflows of the calling flow (tests, a machine without workers); `auto` is `deployment` when the pool has an
online worker, else `inline`.

A model that screened needs-review may suspend for a maintainer's decision (flows/review_gate.py): the dispatcher
stops waiting for it once it is suspended, and its row says it waits; the rest of the run goes on.

A dispatched run is tagged `WATCHED_TAG` and sends a heartbeat every 30 s; when its worker or process dies the
crash automation (flows/limits.py) marks it Crashed, and it is dispatched again, up to
`orchestration.crash_retries` times (any worker of the pool may take it: the killed one is gone). Whatever
happens, every model ends with its row: a run that failed or crashed for good ends it failed, at the stage it
had reached, with the reason.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from prefect import get_run_logger, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound, PrefectException
from prefect.task_runners import ThreadPoolTaskRunner

from flows.limits import HEARTBEAT_S, WATCHED_TAG, census, ensure_crash_detection
from flows.model import curate_model
from flows.settings import settings_from
from registry.catalog import CatalogStore
from registry.schema import ModelOutcome, ModelRef, ModelRow, utcnow
from registry.settings import Settings

MODEL_FLOW = "curate-model"


@dataclass(frozen=True)
class ModelJob:
    """One model to curate in a run, from which stage, and why it is in the run."""

    ref: ModelRef
    first_stage: str = "stage"
    force_stage: bool = False
    force_validation: bool = False
    note: str = ""
    review: bool = False
    """screened needs-review: its run may suspend for a maintainer (flows/review_gate.py); the dispatcher stops
    waiting for it then, and dispatches it as a top-level run (Prefect suspends no subflow)."""

    def parameters(self, run_id: str, overrides: dict[str, Any] | None, online: dict[str, str]) -> dict[str, Any]:
        return {
            "repo_id": self.ref.repo_id,
            "revision": self.ref.revision,
            "run_id": run_id,
            "overrides": overrides,
            "first_stage": self.first_stage,
            "force_stage": self.force_stage,
            "force_validation": self.force_validation,
            "online_pools": online,
            "note": self.note,
        }


def deployment_name(settings: Settings) -> str:
    return f"{MODEL_FLOW}/{settings.orchestration.pool}"


def dispatch_mode(settings: Settings) -> str:
    """`deployment` or `inline`, resolving `auto` by whether the curation pool has an online worker now."""
    mode = settings.orchestration.dispatch
    if mode != "auto":
        return mode
    pool = settings.orchestration.pool
    return "deployment" if census([pool])[pool].online else "inline"


def _ended(
    settings: Settings, job: ModelJob, run_id: str, why: str, attempts: int, flow_run_id: str | None
) -> ModelRow:
    """The row of a model whose flow run ended without finishing it: failed where it was, with the reason."""
    with CatalogStore.from_settings(settings) as store:
        row = store.model_row(run_id, job.ref.repo_id)
        base = row or ModelRow(run_id=run_id, repo_id=job.ref.repo_id, revision=job.ref.revision, stage=job.first_stage)
        stages = {**base.stages, base.stage: f"failed: {why}"}
        ended = base.model_copy(
            update={
                "outcome": ModelOutcome.FAILED,
                "reason": f"{base.stage}: {why}",
                "stages": stages,
                "attempts": attempts,
                "flow_run_id": flow_run_id or base.flow_run_id,
                "updated_at": utcnow(),
            }
        )
        store.record_model_row(ended)
    return ended


def _finished_row(settings: Settings, run_id: str, job: ModelJob, attempts: int) -> ModelRow | None:
    with CatalogStore.from_settings(settings) as store:
        row = store.model_row(run_id, job.ref.repo_id)
        if row is None or row.outcome is ModelOutcome.RUNNING:
            return None
        if row.attempts != attempts:
            row = row.model_copy(update={"attempts": attempts})
            store.record_model_row(row)
    return row


def settled(run: FlowRun, timeout_s: float, poll_s: float = 2.0) -> FlowRun:
    """`run` once it is final or suspended (waiting for a review: the weekly run does not wait for that), or
    as it is after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(run.id)
            state = run.state
            if (state is not None and (state.is_final() or state.is_paused())) or time.monotonic() > deadline:
                return run
            time.sleep(poll_s)


@task(name="dispatch-model", task_run_name="curate {job.ref.repo_id}")
def dispatch_model(job: ModelJob, run_id: str, overrides: dict[str, Any] | None, online: dict[str, str]) -> ModelRow:
    """Run one model's flow run on the curation pool; re-dispatch it once more per allowed crash."""
    logger = get_run_logger()
    settings = settings_from(overrides)
    o = settings.orchestration
    name = deployment_name(settings)
    for attempt in range(1, o.crash_retries + 2):
        try:
            run = run_deployment(
                name,
                parameters=job.parameters(run_id, overrides, online),
                timeout=0 if job.review else o.model_timeout_s,
                tags=[WATCHED_TAG],
                job_variables={"env": {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_S)}},
                as_subflow=not job.review,
            )
        except (ObjectNotFound, PrefectException) as exc:
            return _ended(settings, job, run_id, f"deployment {name} could not run: {exc}", attempt, None)
        if not isinstance(run, FlowRun):  # run_deployment is sync-compatible: a coroutine only in async code
            raise TypeError("dispatch_model must run synchronously")
        if job.review:
            run = settled(run, o.model_timeout_s)
        row = _finished_row(settings, run_id, job, attempt)
        state = run.state
        if row is not None and state is not None and (state.is_completed() or state.is_paused()):
            return row
        status = state.name if state is not None else "unknown"
        why = f"flow run {run.id} ended {status}: {(state.message if state else '') or 'no message'}"
        if state is not None and state.is_crashed() and attempt <= o.crash_retries:
            logger.warning("%s: %s; dispatching it again (attempt %d)", job.ref, why, attempt + 1)
            continue
        if state is not None and not state.is_final():
            why = f"flow run {run.id} still {status} after {o.model_timeout_s:g}s"
        return _ended(settings, job, run_id, why, attempt, str(run.id))
    raise AssertionError("unreachable: the last attempt always returns")


def _inline(job: ModelJob, run_id: str, overrides: dict[str, Any] | None, online: dict[str, str]) -> ModelRow:
    state = curate_model(**job.parameters(run_id, overrides, online), return_state=True)
    settings = settings_from(overrides)
    if state.is_completed():
        row = _finished_row(settings, run_id, job, 1)
        if row is not None:
            return row
    return _ended(settings, job, run_id, f"ended {state.name}: {state.message or 'no message'}", 1, None)


def curate_models(
    jobs: list[ModelJob], run_id: str, overrides: dict[str, Any] | None, online: dict[str, str]
) -> list[ModelRow]:
    """Curate every job's model (see the module docstring); one row each, in the jobs' order."""
    settings = settings_from(overrides)
    mode = dispatch_mode(settings)
    get_run_logger().info("curating %d model(s): %s", len(jobs), mode)
    if mode == "inline" or not jobs:
        return [_inline(job, run_id, overrides, online) for job in jobs]
    ensure_crash_detection(settings)
    width = min(settings.orchestration.max_parallel_models, len(jobs))
    pool: ThreadPoolTaskRunner[Any] = ThreadPoolTaskRunner(max_workers=width)
    with pool as runner:
        futures = [
            runner.submit(
                dispatch_model, parameters={"job": job, "run_id": run_id, "overrides": overrides, "online": online}
            )
            for job in jobs
        ]
        rows: list[ModelRow] = []
        for job, future in zip(jobs, futures, strict=True):
            future.wait()
            if future.state.is_completed():
                rows.append(future.result())
            else:
                why = f"dispatch ended {future.state.name}: {future.state.message or ''}"
                rows.append(_ended(settings, job, run_id, why, 1, None))
    return rows
