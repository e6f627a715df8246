"""Stage 5 for one model: plan its cells, keep those whose inputs did not change, run the others where they can
run, and record the stage (`validate-model`).

`validate_model` plans the templates (`flows.validate.plan_staged`), judges each against its newest recorded result
with the one re-validation rule (validators/revalidation.py), and runs the others on the first site of their
family with quota and an online worker (flows/placement.py): through the `validate-cell/<pool>` deployment
(production), or in-process as a `validate_cell` subflow for the pools in `validation.inline_pools` when
`validation.dispatch = "inline"` (tests). Each running cell holds its site's quota slots (flows/limits.py). One
failing cell never stops the others; every cell ends with a recorded result.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound, PrefectException
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run

from decisions.publication import latest_validations
from flows.limits import slot
from flows.placement import Placement, place, pools_online
from flows.settings import settings_from
from flows.validate import (
    ValidationFlowError,
    cell_weights,
    current_image,
    image_problem,
    plan_staged,
    validate_cell,
)
from registry.artifacts import artifact_key, cell, code
from registry.catalog import CatalogStore
from registry.quotas import Site, gpu_job_variables
from registry.rules import Outcome
from registry.schema import (
    CellStatus,
    DeploymentTemplate,
    ModelRef,
    StagedWeights,
    StageName,
    StageOutcome,
    StageResult,
    ValidationResult,
    ValidationVerdict,
    utcnow,
)
from registry.settings import Settings
from validators.revalidation import REVALIDATION, CellHistory, cell_inputs
from validators.tasks import UnsupportedTaskError

# --------------------------------------------------------------------------------------------- dispatch


def _not_validated(
    settings: Settings,
    ref: ModelRef,
    template: DeploymentTemplate,
    reason: str,
    run_id: str | None,
    cause: CellStatus = CellStatus.NOT_RUN,
) -> ValidationResult:
    """A cell that could not run, recorded with why (every cell ends with a recorded result)."""
    result = ValidationResult(
        template=template,
        verdict=ValidationVerdict.NOT_VALIDATED,
        reason=reason,
        finished_at=utcnow(),
        run_id=run_id,
        not_run=cause,
    )
    with CatalogStore.from_settings(settings) as catalog:
        catalog.record_validation(ref, result)
    return result


def _recorded(settings: Settings, ref: ModelRef, template_id: str, flow_run_id: str) -> ValidationResult | None:
    with CatalogStore.from_settings(settings) as catalog:
        found = [r for r in catalog.validations(ref) if r.template.id == template_id and r.flow_run_id == flow_run_id]
    return found[-1] if found else None


@dataclass(frozen=True)
class CellCall:
    """One cell to run: the model, the template, where, and the run's parameters."""

    ref: ModelRef
    template: DeploymentTemplate
    site: Site
    overrides: dict[str, Any] | None
    docker_host: str | None
    run_id: str | None
    pool_type: str = ""

    def parameters(self) -> dict[str, Any]:
        return {
            "repo_id": self.ref.repo_id,
            "revision": self.ref.revision,
            "template": self.template.model_dump(mode="json"),
            "overrides": self.overrides,
            "docker_host": self.docker_host,
            "region": self.site.region,
            "run_id": self.run_id,
        }


def _deployment_run(settings: Settings, call: CellCall) -> FlowRun | ValidationResult:
    v = settings.validation
    name = f"{v.deployment_flow}/{call.site.pool}"
    template = call.template
    job_variables = (
        gpu_job_variables(settings, template.accelerator_family, template.count)
        if call.pool_type == "kubernetes"
        else None
    )
    try:
        with slot(settings, call.site.limit, template.count):
            run = run_deployment(
                name,
                parameters=call.parameters(),
                timeout=v.cell_timeout_s,
                work_queue_name=call.site.queue or None,
                job_variables=job_variables,
            )
    except (ObjectNotFound, PrefectException) as exc:
        return _not_validated(settings, call.ref, template, f"deployment {name} could not run: {exc}", call.run_id)
    if not isinstance(run, FlowRun):  # run_deployment is sync-compatible: a coroutine only in async code
        raise ValidationFlowError("dispatch_cell must run synchronously")
    return run


@task(name="dispatch-cell")
def dispatch_cell(call: CellCall) -> ValidationResult:
    """Run one cell on its site's pool deployment, holding its quota; the result is read back from the store."""
    settings = settings_from(call.overrides)
    run = _deployment_run(settings, call)
    if isinstance(run, ValidationResult):
        return run
    state = run.state
    recorded = _recorded(settings, call.ref, call.template.id, str(run.id))
    if recorded is not None:
        return recorded
    status = state.name if state is not None else "unknown"
    if state is not None and not state.is_final():
        reason = f"cell run {run.id} still {status} after {settings.validation.cell_timeout_s:g}s"
        return _not_validated(settings, call.ref, call.template, reason, call.run_id)
    failed = ValidationResult(
        template=call.template,
        verdict=ValidationVerdict.FAILED,
        reason=f"cell run {run.id} ended {status} without recording a result",
        flow_run_id=str(run.id),
        finished_at=utcnow(),
        run_id=call.run_id,
    )
    with CatalogStore.from_settings(settings) as catalog:
        catalog.record_validation(call.ref, failed)
    return failed


def _inline(call: CellCall) -> ValidationResult:
    ref, template = call.ref, call.template
    settings = settings_from(call.overrides)
    with slot(settings, call.site.limit, template.count):
        state = validate_cell(
            ref.repo_id,
            ref.revision,
            template,
            call.overrides,
            call.docker_host,
            call.site.region,
            call.run_id,
            return_state=True,
        )
    if state.is_completed():
        result: ValidationResult = state.result()
        return result
    return ValidationResult(
        template=template,
        verdict=ValidationVerdict.FAILED,
        reason=f"cell ended {state.name}: {state.message or 'no message'}",
        finished_at=utcnow(),
        run_id=call.run_id,
    )


def _summary(ref: ModelRef, results: list[ValidationResult], run_id: str | None) -> str:
    lines = [
        f"# Validation of {code(ref)}",
        "",
        "| template | runtime | pool family | status | reason |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in results:
        t = r.template
        reason = r.reason[:300] + (f" (unchanged since {r.run_id})" if reused(r, run_id) else "")
        lines.append(f"| {code(t.id)} | {t.runtime} | {t.accelerator_family} | {r.status.value} | {cell(reason)} |")
    return "\n".join(lines)


def reused(result: ValidationResult, run_id: str | None) -> bool:
    """A result recorded by an earlier run and kept by the re-validation rule."""
    return run_id is not None and result.run_id is not None and result.run_id != run_id


# --------------------------------------------------------------------------------------------- model


@dataclass(frozen=True)
class _Plan:
    """The cells of one model: the results that stand, and the cells to run with where they run."""

    kept: list[ValidationResult]
    to_run: list[tuple[DeploymentTemplate, Placement, Outcome]]


def _runs_on(settings: Settings, template: DeploymentTemplate, weights: StagedWeights) -> StagedWeights:
    """The weights the template's cell runs on (a derived GGUF's own file and signature); the staged weights when
    its GGUF is gone (the cell then fails saying so)."""
    try:
        return cell_weights(settings, template, weights)[0]
    except ValidationFlowError:
        return weights


def _plan_cells(
    settings: Settings,
    weights: StagedWeights,
    planned: Sequence[DeploymentTemplate],
    online: Mapping[str, str],
    force: bool,
) -> _Plan:
    ref = weights.ref
    with CatalogStore.from_settings(settings) as catalog:
        newest = {r.template.id: r for r in latest_validations(catalog.validations(ref))}
        images = {(t.runtime, t.vendor): current_image(catalog, t.runtime, t.vendor) for t in planned}
    kept: list[ValidationResult] = []
    to_run: list[tuple[DeploymentTemplate, Placement, Outcome]] = []
    for planned_template in planned:
        template = planned_template.model_copy(update={"model": ref})
        previous = newest.get(template.id)
        inputs = cell_inputs(
            settings, template, _runs_on(settings, template, weights), images.get((template.runtime, template.vendor))
        )
        decision = REVALIDATION.evaluate(CellHistory(inputs, previous))
        if decision.accepted and not force and previous is not None:
            kept.append(previous)
            continue
        unavailable = image_problem(template, images.get((template.runtime, template.vendor)))
        placement = (
            Placement(None, reason=unavailable, cause=CellStatus.IMAGE_NOT_AVAILABLE)
            if unavailable is not None
            else place(settings, template, online)
        )
        if _still_cannot_run(previous, placement):
            assert previous is not None
            kept.append(previous)  # the same "no worker" as last time: nothing new to record
            continue
        to_run.append((template, placement, decision))
    return _Plan(kept, to_run)


def _still_cannot_run(previous: ValidationResult | None, placement: Placement) -> bool:
    """The cell cannot run now for the very reason its last result gave (the same image missing, the same pools
    without workers)."""
    return (
        previous is not None
        and placement.site is None
        and previous.verdict is ValidationVerdict.NOT_VALIDATED
        and previous.reason == placement.reason
    )


def _run_cells(
    plan_: _Plan,
    overrides: dict[str, Any] | None,
    docker_host: str | None,
    online: Mapping[str, str],
    run_id: str | None,
) -> list[ValidationResult]:
    logger = get_run_logger()
    settings = settings_from(overrides)
    results = list(plan_.kept)
    remote: list[tuple[PrefectFuture[ValidationResult], DeploymentTemplate]] = []
    for template, placement, decision in plan_.to_run:
        logger.info("cell %s runs: %s", template.id, "; ".join(decision.reasons) or "forced")
        ref = template.model
        assert ref is not None
        if placement.site is None:
            results.append(_not_validated(settings, ref, template, placement.reason, run_id, placement.cause))
            continue
        pool_type = online.get(placement.site.pool, "")
        call = CellCall(ref, template, placement.site, overrides, docker_host, run_id, pool_type)
        if placement.inline:
            results.append(_inline(call))
        else:
            remote.append((dispatch_cell.submit(call), template))
    for future, template in remote:
        future.wait()
        state = future.state
        if state.is_completed():
            results.append(future.result())
        else:
            reason = f"dispatch ended {state.name}: {state.message or ''}"
            assert template.model is not None
            results.append(_not_validated(settings, template.model, template, reason, run_id))
    return sorted(results, key=lambda r: r.template.id)


def _record_validate_stage(
    settings: Settings, ref: ModelRef, results: list[ValidationResult], run_id: str | None
) -> None:
    passed = [r.template.id for r in results if r.verdict is ValidationVerdict.PASSED]
    others = [f"{r.template.id}: {r.status.value}" for r in results if r.verdict is not ValidationVerdict.PASSED]
    kept = sorted({r.run_id for r in results if reused(r, run_id) and r.run_id})
    reason = f"{len(passed)} of {len(results)} template(s) passed" + (f" ({'; '.join(others)})" if others else "")
    if kept:
        reason += f"; {sum(1 for r in results if reused(r, run_id))} unchanged since {', '.join(kept)}"
    outcome = StageOutcome.OK if passed else StageOutcome.FAILED
    _record_stage(settings, ref, outcome, reason, run_id, {"passed": passed, "unchanged_since": kept})


def _record_unsupported(settings: Settings, ref: ModelRef, reason: str, run_id: str | None) -> None:
    """The staged files say the pipeline serves none of the model's tasks: the stage is SKIPPED, with why."""
    _record_stage(settings, ref, StageOutcome.SKIPPED, reason, run_id, {})


def _record_stage(
    settings: Settings,
    ref: ModelRef,
    outcome: StageOutcome,
    reason: str,
    run_id: str | None,
    payload: dict[str, Any],
) -> None:
    """The `validate` stage result of this model, under the validate stage's policy digest."""
    with CatalogStore.from_settings(settings) as catalog:
        catalog.record_stage(
            StageResult(
                ref=ref,
                stage=StageName.VALIDATE,
                outcome=outcome,
                reason=reason,
                policy_digest=settings.policy_digest("validate"),
                run_id=run_id or str(flow_run.id or "") or None,
                payload=payload,
            )
        )


@flow(name="validate-model", log_prints=True)
def validate_model(
    repo_id: str,
    revision: str,
    overrides: dict[str, Any] | None = None,
    docker_host: str | None = None,
    templates: list[DeploymentTemplate] | None = None,
    online_pools: dict[str, str] | None = None,
    run_id: str | None = None,
    force: bool = False,
) -> list[ValidationResult]:
    """Plan (unless `templates` are given) and validate every template of a staged model; one result each.

    A cell whose inputs did not change since its recorded result is not run again (validators/revalidation.py;
    `force` runs every cell). `online_pools` is the run's census (pool -> worker type of the pools with an
    online worker); None takes one now. `run_id` is the curation run the cells are recorded under.
    """
    logger = get_run_logger()
    settings = settings_from(overrides)
    ref = ModelRef(repo_id=repo_id, revision=revision)
    with CatalogStore.from_settings(settings) as catalog:
        weights = catalog.staged(ref)
    if weights is None:
        raise ValidationFlowError(f"{ref} is not staged; run `curate stage {repo_id} --revision {revision}` first")
    try:
        planned = tuple(templates) if templates is not None else plan_staged(settings, weights)
    except UnsupportedTaskError as exc:
        _record_unsupported(settings, ref, str(exc), run_id)
        raise
    logger.info("%s: %d template(s): %s", ref, len(planned), ", ".join(t.id for t in planned))
    online = online_pools if online_pools is not None else pools_online(settings)
    cells = _plan_cells(settings, weights, planned, online, force)
    results = _run_cells(cells, overrides, docker_host, online, run_id)
    create_markdown_artifact(
        key=artifact_key("validation", ref.repo_id),
        markdown=_summary(ref, results, run_id),
        description=f"Validation cells of {ref}",
    )
    _record_validate_stage(settings, ref, results, run_id)
    return results
