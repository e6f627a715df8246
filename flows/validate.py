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
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from docker.errors import DockerException
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun, WorkerStatus
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound, PrefectException, PrefectHTTPStatusError
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run

from builders.errors import BuildersError
from builders.recipes import get_recipe
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
from validators.cells import cell_verdict, slo_gate, suite_task
from validators.conformance import publish_artifact, report_markdown, run_suite
from validators.conformance_checks.base import Target
from validators.containers import LABEL_CELL, ContainerSpec, run_container
from validators.errors import ValidatorError
from validators.planner import plan
from validators.tasks import (
    CHAT,
    SPEECH_RECOGNITION,
    VISION_CHAT,
    UnsupportedTaskError,
    detect_task,
    read_evidence,
)
from validators.throughput import LoadSpec, run_benchmark
from validators.transcription_bench import TranscriptionLoad, run_transcription_benchmark

NO_CAPACITY = "no capacity"
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


def _card_task(settings: Settings, ref: ModelRef) -> str | None:
    """The card's pipeline tag as discovery saw it at this revision (task detection's tie-breaker)."""
    with CatalogStore.from_settings(settings) as catalog:
        tags = [c.pipeline_tag for c in catalog.candidates() if c.ref == ref and c.pipeline_tag]
    return tags[-1] if tags else None


def plan_staged(
    settings: Settings, weights: StagedWeights, region: str | None = None
) -> tuple[DeploymentTemplate, ...]:
    """Plan the templates of a staged model from its config.json, processor files and safetensors headers in
    blob storage; the task is detected from those staged files (`UnsupportedTaskError` when none is served)."""
    region = region or settings.storage.primary_region
    prefix = model_prefix(weights.ref)
    names = {f.name for f in weights.files}
    if "config.json" not in names:
        raise ValidationFlowError(f"{weights.ref} was staged without config.json; it cannot be planned")
    with RegionalBlobStore(settings.storage, regions=(region,)) as store:
        config = json.loads(store.get_bytes(region, prefix + "config.json", max_bytes=MAX_CONFIG_BYTES))

        def read(name: str) -> bytes:
            return store.get_bytes(region, prefix + name, max_bytes=MAX_CONFIG_BYTES)

        evidence = read_evidence(config, names, read, _card_task(settings, weights.ref))
        task_name = detect_task(evidence).require_supported()
        parameters: dict[str, int] = {}
        for name in sorted(n for n in names if n.endswith(".safetensors")):
            part = staged_parameters(store, region, prefix + name, settings.screening.max_header_bytes)
            for dtype, count in part.items():
                parameters[dtype] = parameters.get(dtype, 0) + count
    return plan(
        weights.ref.repo_id, config, parameters or None, settings, revision=weights.ref.revision, task=task_name
    )


def _pool_of(settings: Settings, template: DeploymentTemplate) -> tuple[str, str]:
    family = settings.accelerators.get(template.accelerator_family)
    if family is None:
        raise ValidationFlowError(f"accelerator family {template.accelerator_family} is not in curation.toml")
    return family.pool, family.region or settings.storage.primary_region


# --------------------------------------------------------------------------------------------- one cell


def _signed_image(settings: Settings, runtime: str) -> RuntimeImage:
    with CatalogStore.from_settings(settings) as catalog:
        images = [image for image in catalog.images(runtime) if image.signature is not None]
    if not images:
        raise ValidationFlowError(f"no signed {runtime} image is recorded; run `curate images build` first")
    return images[0]


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
        keys = ["profile", "concurrency", "requests", "errors", "output_token_throughput", "ttft_p50_s", "e2e_p50_s"]
        if any(m.audio_seconds_per_s is not None for m in result.benchmark):
            keys = ["profile", "concurrency", "requests", "errors", "audio_seconds_per_s", "e2e_p50_s", "e2e_p90_s"]
        lines += ["## Benchmark", "", "| " + " | ".join(keys) + " |", "|" + " --- |" * len(keys)]
        for row in (flat_row(m) for m in result.benchmark):
            lines.append("| " + " | ".join(cell(row.get(k)) for k in keys) + " |")
        if plot is not None:
            lines += ["", f"Latency vs throughput plot: `{plot}`"]
    return "\n".join(lines)


def _benchmark(
    settings: Settings,
    task_name: str,
    template: DeploymentTemplate,
    spec: ContainerSpec,
    model: str,
    tokenizer_dir: Path | None,
) -> tuple[BenchmarkMetrics, ...] | None:
    """The task's bounded benchmark: streamed chat (text prompts, also for vision-language chat), transcription
    uploads for speech recognition, none for embeddings."""
    v = settings.validation
    if task_name == SPEECH_RECOGNITION:
        speech = TranscriptionLoad(
            concurrencies=v.bench_concurrencies,
            max_requests=v.bench_max_requests,
            max_duration_s=v.bench_max_duration_s,
            grace_s=min(30.0, v.bench_max_duration_s),
            clip_seconds=v.bench_audio_seconds,
        )
        return run_transcription_benchmark(spec.base_url + "/v1", model, speech)
    if task_name not in (CHAT, VISION_CHAT):
        return None
    load = LoadSpec(
        profile="sweep",
        concurrencies=v.bench_concurrencies,
        max_requests=v.bench_max_requests,
        max_duration_s=v.bench_max_duration_s,
        grace_s=min(30.0, v.bench_max_duration_s),
        input_tokens=v.bench_input_tokens,
        output_tokens=v.bench_output_tokens,
    )
    # Goodput counts the requests that meet the per-request SLOs of the gate the cell verdict applies.
    slo = slo_gate(settings.slo, template) or settings.slo
    return run_benchmark(spec.base_url + "/v1", model, load, tokenizer_dir=tokenizer_dir, slo=slo)


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
        metrics = _benchmark(settings, task_name, template, spec, ref.repo_id, tokenizer_dir)
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


@flow(name="validate-cell", log_prints=True)
def validate_cell(
    repo_id: str,
    revision: str,
    template: DeploymentTemplate,
    overrides: dict[str, Any] | None = None,
    docker_host: str | None = None,
) -> ValidationResult:
    """Validate one template of one staged model; the result (any verdict) is recorded and returned."""
    logger = get_run_logger()
    settings = settings_from(overrides)
    ref = ModelRef(repo_id=repo_id, revision=revision)
    template = template if template.model is not None else template.model_copy(update={"model": ref})
    run_id = str(flow_run.id or "") or None
    result = ValidationResult(template=template, verdict=ValidationVerdict.FAILED, flow_run_id=run_id)
    plot: Path | None = None
    with tempfile.TemporaryDirectory(prefix="cell-") as tmp:
        try:
            _, region = _pool_of(settings, template)
            with CatalogStore.from_settings(settings) as catalog:
                weights = catalog.staged(ref)
            if weights is None or weights.signature is None:
                raise ValidationFlowError(f"{ref} is not staged with a signature; run `curate stage {repo_id}` first")
            image = _signed_image(settings, template.runtime)
            key = signing_key(settings)
            digest = verify_image(image.reference, key.public_key(), expected_digest=image.digest)
            result = result.model_copy(update={"image_digest": digest})
            verify_staged(settings, weights, region)
            result = result.model_copy(update={"weights_signature_digest": weights.signature.signature_digest})
            logger.info("image %s and weights of %s verified in %s; starting the runtime", digest, ref, region)
            report, metrics = _exercise(settings, template, weights, image, region, docker_host, Path(tmp))
            verdict = cell_verdict(template, report, metrics, settings.validation, image.version, settings.slo)
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
            if metrics:
                publish_table_artifact(
                    metrics, key=artifact_key("bench", template.id), description=f"benchmark {template.id}"
                )
                if len(metrics) > 1:
                    plot = plot_sweep(
                        metrics, settings.data_dir / "validation" / template.id / "sweep.png", template.id
                    )
            publish_artifact(report, key=artifact_key("conformance", template.id))
        except _CELL_ERRORS as exc:
            logger.warning("cell %s failed: %s", template.id, exc)
            result = result.model_copy(update={"verdict": ValidationVerdict.FAILED, "reason": str(exc)[:4000]})
    result = _finish(settings, ref, result, plot)
    logger.info("cell %s: %s (%s)", template.id, result.verdict.value, result.reason)
    return result


# --------------------------------------------------------------------------------------------- dispatch


def pool_has_worker(pool: str, deadline_s: float, poll_s: float = 2.0) -> bool:
    """True as soon as `pool` has an online worker; False when none appears within `deadline_s`."""
    end = time.monotonic() + deadline_s
    with get_client(sync_client=True) as client:
        while True:
            try:
                workers = client.read_workers_for_work_pool(work_pool_name=pool)
            except ObjectNotFound:
                workers = []
            except PrefectHTTPStatusError as exc:  # the sync client reports a missing pool as a plain 404
                if exc.response.status_code != 404:
                    raise
                workers = []
            if any(w.status == WorkerStatus.ONLINE for w in workers):
                return True
            if time.monotonic() + poll_s > end:
                return False
            time.sleep(poll_s)


def _not_validated(template: DeploymentTemplate, reason: str) -> ValidationResult:
    return ValidationResult(
        template=template, verdict=ValidationVerdict.NOT_VALIDATED, reason=reason, finished_at=utcnow()
    )


def _recorded(settings: Settings, ref: ModelRef, template_id: str, run_id: str) -> ValidationResult | None:
    with CatalogStore.from_settings(settings) as catalog:
        found = [r for r in catalog.validations(ref) if r.template.id == template_id and r.flow_run_id == run_id]
    return found[-1] if found else None


@task(name="dispatch-cell")
def dispatch_cell(
    ref: ModelRef, template: DeploymentTemplate, overrides: dict[str, Any] | None, docker_host: str | None
) -> ValidationResult:
    """Run one cell on its pool's deployment once the pool has a worker; NOT_VALIDATED when it has none."""
    settings = settings_from(overrides)
    pool, _ = _pool_of(settings, template)
    v = settings.validation
    if not pool_has_worker(pool, v.capacity_deadline_s):
        result = _not_validated(
            template, f"{NO_CAPACITY}: pool {pool} had no online worker within {v.capacity_deadline_s:g}s"
        )
        with CatalogStore.from_settings(settings) as catalog:
            catalog.record_validation(ref, result)
        return result
    parameters = {
        "repo_id": ref.repo_id,
        "revision": ref.revision,
        "template": template.model_dump(mode="json"),
        "overrides": overrides,
        "docker_host": docker_host,
    }
    try:
        run = run_deployment(f"{v.deployment_flow}/{pool}", parameters=parameters, timeout=v.cell_timeout_s)
        if not isinstance(run, FlowRun):  # run_deployment is sync-compatible: a coroutine only in async code
            raise ValidationFlowError("dispatch_cell must run synchronously")
    except (ObjectNotFound, PrefectException) as exc:
        return _not_validated(template, f"deployment {v.deployment_flow}/{pool} could not run: {exc}")
    state = run.state
    recorded = _recorded(settings, ref, template.id, str(run.id))
    if recorded is not None:
        return recorded
    status = state.name if state is not None else "unknown"
    if state is not None and not state.is_final():
        return _not_validated(template, f"cell run {run.id} still {status} after {v.cell_timeout_s:g}s")
    failed = ValidationResult(
        template=template,
        verdict=ValidationVerdict.FAILED,
        reason=f"cell run {run.id} ended {status} without recording a result",
        flow_run_id=str(run.id),
        finished_at=utcnow(),
    )
    with CatalogStore.from_settings(settings) as catalog:
        catalog.record_validation(ref, failed)
    return failed


def _inline(
    ref: ModelRef, template: DeploymentTemplate, overrides: dict[str, Any] | None, docker_host: str | None
) -> ValidationResult:
    state = validate_cell(ref.repo_id, ref.revision, template, overrides, docker_host, return_state=True)
    if state.is_completed():
        result: ValidationResult = state.result()
        return result
    return ValidationResult(
        template=template,
        verdict=ValidationVerdict.FAILED,
        reason=f"cell ended {state.name}: {state.message or 'no message'}",
        finished_at=utcnow(),
    )


def _summary(ref: ModelRef, results: list[ValidationResult]) -> str:
    lines = [
        f"# Validation of {code(ref)}",
        "",
        "| template | runtime | pool family | verdict | reason |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in results:
        t = r.template
        lines.append(
            f"| {code(t.id)} | {t.runtime} | {t.accelerator_family} | {r.verdict.value} | {cell(r.reason[:300])} |"
        )
    return "\n".join(lines)


@flow(name="validate-model", log_prints=True)
def validate_model(
    repo_id: str,
    revision: str,
    overrides: dict[str, Any] | None = None,
    docker_host: str | None = None,
    templates: list[DeploymentTemplate] | None = None,
) -> list[ValidationResult]:
    """Plan (unless `templates` are given) and validate every template of a staged model; one result each."""
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
        _record_validate(settings, ref, StageOutcome.SKIPPED, str(exc), {})
        raise
    logger.info("%s: %d template(s): %s", ref, len(planned), ", ".join(t.id for t in planned))
    inline_pools = set(settings.validation.inline_pools) if settings.validation.dispatch == "inline" else set()
    results: list[ValidationResult] = []
    remote: list[tuple[PrefectFuture[ValidationResult], DeploymentTemplate]] = []
    for planned_template in planned:
        template = planned_template.model_copy(update={"model": ref})
        try:
            pool, _ = _pool_of(settings, template)
        except ValidationFlowError as exc:
            results.append(_not_validated(template, str(exc)))
            continue
        if pool in inline_pools:
            results.append(_inline(ref, template, overrides, docker_host))
        else:
            remote.append((dispatch_cell.submit(ref, template, overrides, docker_host), template))
    for future, template in remote:
        future.wait()
        state = future.state
        if state.is_completed():
            results.append(future.result())
        else:
            results.append(_not_validated(template, f"dispatch ended {state.name}: {state.message or ''}"))
    create_markdown_artifact(
        key=artifact_key("validation", ref.repo_id),
        markdown=_summary(ref, results),
        description=f"Validation cells of {ref}",
    )
    passed = [r.template.id for r in results if r.verdict is ValidationVerdict.PASSED]
    others = [f"{r.template.id}: {r.verdict.value}" for r in results if r.verdict is not ValidationVerdict.PASSED]
    reason = f"{len(passed)} of {len(results)} template(s) passed" + (f" ({'; '.join(others)})" if others else "")
    _record_validate(settings, ref, StageOutcome.OK if passed else StageOutcome.FAILED, reason, {"passed": passed})
    return results


def _record_validate(
    settings: Settings, ref: ModelRef, outcome: StageOutcome, reason: str, payload: dict[str, Any]
) -> None:
    with CatalogStore.from_settings(settings) as catalog:
        catalog.record_stage(
            StageResult(
                ref=ref,
                stage=StageName.VALIDATE,
                outcome=outcome,
                reason=reason,
                policy_digest=settings.policy_digest(),
                run_id=str(flow_run.id or "") or None,
                payload=payload,
            )
        )
