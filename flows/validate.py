"""Stage 5 flows: validate a staged model on every deployment template the planner offers.

`validate_model` plans the templates (validators/planner.py) from the staged config.json and safetensors headers,
then runs one `validate_cell` per template on the work pool of the template's accelerator family: through the
`validate-cell/<pool>` deployment (production), after checking the pool has an online worker within
`validation.capacity_deadline_s` (else the cell ends not-validated: "no capacity"), or in-process as a subflow
for the pools in `validation.inline_pools` when `validation.dispatch = "inline"` (tests, the local demo).
One failing cell never stops the others.

`validate_cell` (one template): verify the image signature and digest, verify the staged weights' signature and
every blob in the region of the template's accelerator pool, start the runtime image with those weights
(validators/containers.py), wait for its health probe, run the conformance suite and a small bounded benchmark,
stop and remove the container, and record a `ValidationResult` whose verdict follows the policy in
`[validation]` (validators/cells.py). Markdown and table artifacts show the conformance table and the benchmark.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from docker.errors import DockerException
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound, PrefectException
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run

from builders.errors import BuildersError
from builders.recipes import get_recipe
from decisions.publication import latest_validations
from flows.limits import slot
from flows.placement import Placement, place, pools_online
from flows.settings import settings_from
from flows.stage import verify_staged
from registry.artifacts import artifact_key, cell, code
from registry.blob_sas import container_read_url
from registry.blobs import RegionalBlobStore, model_prefix
from registry.catalog import CatalogStore
from registry.errors import RegistryError
from registry.image_signatures import verify_image
from registry.keys import signing_key
from registry.net import LOOPBACK, free_port
from registry.quotas import Site, gpu_job_variables, sites
from registry.rules import Outcome
from registry.schema import (
    BenchmarkMetrics,
    ConformanceReport,
    DeploymentTemplate,
    ModelRef,
    RuntimeImage,
    StagedWeights,
    StageName,
    StageOutcome,
    StageResult,
    ValidationResult,
    ValidationVerdict,
    utcnow,
)
from registry.settings import Settings
from scanners.safetensors_headers import scan_safetensors_file
from validators.bench_report import flat_row, plot_sweep, publish_table_artifact
from validators.cells import cell_verdict, suite_task
from validators.conformance import publish_artifact, report_markdown, run_suite
from validators.conformance_checks.base import Target
from validators.containers import LABEL_CELL, ContainerSpec, run_container
from validators.errors import ValidatorError
from validators.planner import plan
from validators.revalidation import REVALIDATION, CellHistory, cell_inputs
from validators.throughput import LoadSpec, run_benchmark

MAX_CONFIG_BYTES = 4 * 1024 * 1024
_CELL_ERRORS = (ValidatorError, RegistryError, BuildersError, DockerException)


class ValidationFlowError(ValidatorError):
    """The model cannot be validated at all (not staged, no config); the message says what to do first."""


# --------------------------------------------------------------------------------------------- inputs


def staged_parameters(store: RegionalBlobStore, region: str, name: str, max_header: int) -> dict[str, int]:
    """dtype -> parameter count of one staged safetensors file, from its header read by range (the screening
    parser, scanners/safetensors_headers.py); a header that does not check out stops the planning."""
    info = store.properties(region, name)
    scan = scan_safetensors_file(
        name,
        info.size if info is not None else None,
        lambda offset, length: store.read_range(region, name, offset, length),
        max_header_bytes=max_header,
    )
    if not scan.ok:
        problems = "; ".join(f.message for f in scan.findings[:3])
        raise ValidationFlowError(f"{name}: the staged safetensors header does not check out ({problems})")
    return scan.parameters


def plan_staged(
    settings: Settings, weights: StagedWeights, region: str | None = None
) -> tuple[DeploymentTemplate, ...]:
    """Plan the templates of a staged model from its config.json and safetensors headers in blob storage."""
    region = region or settings.storage.primary_region
    prefix = model_prefix(weights.ref)
    names = {f.name for f in weights.files}
    if "config.json" not in names:
        raise ValidationFlowError(f"{weights.ref} was staged without config.json; it cannot be planned")
    with RegionalBlobStore(settings.storage, regions=(region,)) as store:
        config = json.loads(store.get_bytes(region, prefix + "config.json", max_bytes=MAX_CONFIG_BYTES))
        parameters: dict[str, int] = {}
        for name in sorted(n for n in names if n.endswith(".safetensors")):
            part = staged_parameters(store, region, prefix + name, settings.screening.max_header_bytes)
            for dtype, count in part.items():
                parameters[dtype] = parameters.get(dtype, 0) + count
    return plan(weights.ref.repo_id, config, parameters or None, settings, revision=weights.ref.revision)


def _home_region(settings: Settings, template: DeploymentTemplate) -> str:
    found = sites(settings, template.accelerator_family)
    if not found:
        raise ValidationFlowError(f"accelerator family {template.accelerator_family} is not in curation.toml")
    return found[0].region


# --------------------------------------------------------------------------------------------- one cell


def current_image(catalog: CatalogStore, runtime: str) -> RuntimeImage | None:
    """The image a cell of `runtime` runs on now: the newest signed one recorded (None: there is none)."""
    return next((image for image in catalog.images(runtime) if image.signature is not None), None)


def _signed_image(settings: Settings, runtime: str) -> RuntimeImage:
    with CatalogStore.from_settings(settings) as catalog:
        image = current_image(catalog, runtime)
    if image is None:
        raise ValidationFlowError(f"no signed {runtime} image is recorded; run `curate images build` first")
    return image


def _cell_markdown(result: ValidationResult, plot: Path | None) -> str:
    t = result.template
    lines = [
        f"# Cell {code(t.id)}: **{result.verdict.value}**",
        "",
        f"Runtime `{t.runtime}` on `{t.accelerator_family}` x{t.count}, context {t.context_length}, "
        f"image `{result.image_digest or '-'}`, weights signature `{result.weights_signature_digest or '-'}`.",
        "",
        f"Reason: {result.reason}",
        "",
    ]
    if result.accepted_deviations:
        lines += ["## Accepted deviations", ""] + [f"- {d}" for d in result.accepted_deviations] + [""]
    if result.stale_deviations:
        lines += ["## Stale deviations (the check passes: drop them from the policy)", ""]
        lines += [f"- {d}" for d in result.stale_deviations] + [""]
    if result.conformance is not None:
        lines += [report_markdown(result.conformance), ""]
    if result.benchmark:
        keys = ["profile", "concurrency", "requests", "errors", "output_token_throughput", "ttft_s_p50", "e2e_s_p50"]
        lines += ["## Benchmark", "", "| " + " | ".join(keys) + " |", "|" + " --- |" * len(keys)]
        for row in (flat_row(m) for m in result.benchmark):
            lines.append("| " + " | ".join(cell(row.get(k)) for k in keys) + " |")
        if plot is not None:
            lines += ["", f"Latency vs throughput plot: `{plot}`"]
    return "\n".join(lines)


def _benchmark(
    settings: Settings, spec: ContainerSpec, model: str, tokenizer_dir: Path | None
) -> tuple[BenchmarkMetrics, ...]:
    v = settings.validation
    load = LoadSpec(
        profile="sweep",
        concurrencies=v.bench_concurrencies,
        max_requests=v.bench_max_requests,
        max_duration_s=v.bench_max_duration_s,
        grace_s=min(30.0, v.bench_max_duration_s),
        input_tokens=v.bench_input_tokens,
        output_tokens=v.bench_output_tokens,
    )
    return run_benchmark(spec.base_url + "/v1", model, load, tokenizer_dir=tokenizer_dir, slo=settings.slo)


def _exercise(
    settings: Settings,
    template: DeploymentTemplate,
    weights: StagedWeights,
    image: RuntimeImage,
    region: str,
    docker_host: str | None,
    work: Path,
) -> tuple[ConformanceReport, tuple[BenchmarkMetrics, ...] | None]:
    recipe = get_recipe(template.runtime)
    ref = weights.ref
    port = free_port()
    valid = timedelta(seconds=settings.validation.sas_valid_s)
    with RegionalBlobStore(settings.storage, regions=(region,)) as store:
        url = container_read_url(store, region, valid_for=valid)
        tokenizer_dir: Path | None = None
        if any(f.name == "tokenizer.json" for f in weights.files):
            tokenizer_dir = work / "tokenizer"
            store.download_to(region, model_prefix(ref) + "tokenizer.json", tokenizer_dir / "tokenizer.json")
    # The template's runtime_args already carry tensor parallelism, context and parsers (validators/planner.py).
    args = recipe.launch_args(ref.repo_id, port=port, host=LOOPBACK)
    env = {
        **recipe.launch_env(ref.repo_id, port=port),
        "MODEL_BLOB_URL": url,
        "MODEL_ID": ref.repo_id,
        "MODEL_REVISION": ref.revision,
    }
    spec = ContainerSpec(
        image=image.pinned,
        command=(*args, *template.runtime_args),
        port=port,
        health_path=recipe.health_path,
        environment=env,
        vendor=template.vendor,
        gpu_count=template.count if template.vendor != "cpu" else 0,
        labels={LABEL_CELL: template.id},
    )
    task_name = suite_task(template.task)
    with run_container(spec, health_timeout_s=settings.validation.health_timeout_s, docker_host=docker_host):
        report = run_suite(
            Target(spec.base_url + "/v1", ref.repo_id, task=task_name, tool_call_parser=template.tool_call_parser)
        )
        metrics = _benchmark(settings, spec, ref.repo_id, tokenizer_dir) if task_name == "chat" else None
    return report, metrics


def _finish(settings: Settings, ref: ModelRef, result: ValidationResult, plot: Path | None = None) -> ValidationResult:
    result = result.model_copy(update={"finished_at": utcnow()})
    with CatalogStore.from_settings(settings) as catalog:
        catalog.record_validation(ref, result)
    create_markdown_artifact(
        key=artifact_key("cell", result.template.id),
        markdown=_cell_markdown(result, plot),
        description=f"Validation cell {result.template.id}: {result.verdict.value}",
    )
    return result


def _cell_artifacts(
    settings: Settings,
    template: DeploymentTemplate,
    report: ConformanceReport,
    metrics: tuple[BenchmarkMetrics, ...] | None,
) -> Path | None:
    """The conformance and benchmark artifacts of a cell; the path of its sweep plot, if it has one."""
    plot: Path | None = None
    if metrics:
        publish_table_artifact(metrics, key=artifact_key("bench", template.id), description=f"benchmark {template.id}")
        if len(metrics) > 1:
            plot = plot_sweep(metrics, settings.data_dir / "validation" / template.id / "sweep.png", template.id)
    publish_artifact(report, key=artifact_key("conformance", template.id))
    return plot


@flow(name="validate-cell", log_prints=True)
def validate_cell(
    repo_id: str,
    revision: str,
    template: DeploymentTemplate,
    overrides: dict[str, Any] | None = None,
    docker_host: str | None = None,
    region: str | None = None,
    run_id: str | None = None,
) -> ValidationResult:
    """Validate one template of one staged model (its weights read in `region`, default: the family's home
    region); the result (any verdict) is recorded, with the inputs it was reached on, and returned."""
    logger = get_run_logger()
    settings = settings_from(overrides)
    ref = ModelRef(repo_id=repo_id, revision=revision)
    template = template if template.model is not None else template.model_copy(update={"model": ref})
    result = ValidationResult(
        template=template,
        verdict=ValidationVerdict.FAILED,
        flow_run_id=str(flow_run.id or "") or None,
        run_id=run_id,
    )
    plot: Path | None = None
    with tempfile.TemporaryDirectory(prefix="cell-") as tmp:
        try:
            region = region or _home_region(settings, template)
            with CatalogStore.from_settings(settings) as catalog:
                weights = catalog.staged(ref)
            if weights is None or weights.signature is None:
                raise ValidationFlowError(f"{ref} is not staged with a signature; run `curate stage {repo_id}` first")
            image = _signed_image(settings, template.runtime)
            result = result.model_copy(update={"inputs": cell_inputs(settings, template, weights, image)})
            key = signing_key(settings)
            digest = verify_image(image.reference, key.public_key(), expected_digest=image.digest)
            result = result.model_copy(update={"image_digest": digest})
            verify_staged(settings, weights, region)
            result = result.model_copy(update={"weights_signature_digest": weights.signature.signature_digest})
            logger.info("image %s and weights of %s verified in %s; starting the runtime", digest, ref, region)
            report, metrics = _exercise(settings, template, weights, image, region, docker_host, Path(tmp))
            verdict = cell_verdict(template, report, metrics, settings.validation, image.version)
            result = result.model_copy(
                update={
                    "conformance": report,
                    "benchmark": metrics or (),
                    "verdict": verdict.verdict,
                    "reason": verdict.reason,
                    "accepted_deviations": verdict.accepted_deviations,
                    "stale_deviations": verdict.stale_deviations,
                }
            )
            plot = _cell_artifacts(settings, template, report, metrics)
        except _CELL_ERRORS as exc:
            logger.warning("cell %s failed: %s", template.id, exc)
            result = result.model_copy(update={"verdict": ValidationVerdict.FAILED, "reason": str(exc)[:4000]})
    result = _finish(settings, ref, result, plot)
    logger.info("cell %s: %s (%s)", template.id, result.verdict.value, result.reason)
    return result


# --------------------------------------------------------------------------------------------- dispatch


def _not_validated(
    settings: Settings, ref: ModelRef, template: DeploymentTemplate, reason: str, run_id: str | None
) -> ValidationResult:
    """A cell that could not run, recorded with why (every cell ends with a recorded result)."""
    result = ValidationResult(
        template=template, verdict=ValidationVerdict.NOT_VALIDATED, reason=reason, finished_at=utcnow(), run_id=run_id
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
        "| template | runtime | pool family | verdict | reason |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in results:
        t = r.template
        reason = r.reason[:300] + (f" (unchanged since {r.run_id})" if reused(r, run_id) else "")
        lines.append(f"| {code(t.id)} | {t.runtime} | {t.accelerator_family} | {r.verdict.value} | {cell(reason)} |")
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
        images = {runtime: current_image(catalog, runtime) for runtime in {t.runtime for t in planned}}
    kept: list[ValidationResult] = []
    to_run: list[tuple[DeploymentTemplate, Placement, Outcome]] = []
    for planned_template in planned:
        template = planned_template.model_copy(update={"model": ref})
        previous = newest.get(template.id)
        inputs = cell_inputs(settings, template, weights, images.get(template.runtime))
        decision = REVALIDATION.evaluate(CellHistory(inputs, previous))
        if decision.accepted and not force and previous is not None:
            kept.append(previous)
            continue
        to_run.append((template, place(settings, template, online), decision))
    return _Plan(kept, to_run)


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
            results.append(_not_validated(settings, ref, template, placement.reason, run_id))
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
    others = [f"{r.template.id}: {r.verdict.value}" for r in results if r.verdict is not ValidationVerdict.PASSED]
    kept = sorted({r.run_id for r in results if reused(r, run_id) and r.run_id})
    reason = f"{len(passed)} of {len(results)} template(s) passed" + (f" ({'; '.join(others)})" if others else "")
    if kept:
        reason += f"; {sum(1 for r in results if reused(r, run_id))} unchanged since {', '.join(kept)}"
    with CatalogStore.from_settings(settings) as catalog:
        catalog.record_stage(
            StageResult(
                ref=ref,
                stage=StageName.VALIDATE,
                outcome=StageOutcome.OK if passed else StageOutcome.FAILED,
                reason=reason,
                policy_digest=settings.policy_digest("validate"),
                run_id=run_id or str(flow_run.id or "") or None,
                payload={"passed": passed, "unchanged_since": kept},
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
    planned = tuple(templates) if templates is not None else plan_staged(settings, weights)
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
