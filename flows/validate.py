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
import struct
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from azure.core.exceptions import AzureError
from azure.storage.blob import ContainerSasPermissions, generate_container_sas
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
from builders.signing import verify_image
from devstack.net import free_port
from flows.settings import settings_from
from flows.stage import verify_staged
from registry.blobs import RegionalBlobStore, model_prefix, parse_connection_string, translate
from registry.catalog import CatalogStore
from registry.errors import RegistryError
from registry.keys import SigningKeyError, public_pem, signing_key
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
from validators.bench_report import flat_row, plot_sweep, publish_table_artifact
from validators.cells import cell_verdict, suite_task
from validators.conformance import publish_artifact, report_markdown, run_suite
from validators.conformance_checks.base import Target
from validators.containers import LABEL_CELL, ContainerSpec, run_container
from validators.errors import ValidatorError
from validators.planner import plan
from validators.throughput import LoadSpec, run_benchmark

NO_CAPACITY = "no capacity"
MAX_CONFIG_BYTES = 4 * 1024 * 1024
_CELL_ERRORS = (ValidatorError, RegistryError, BuildersError, SigningKeyError, DockerException)


class ValidationFlowError(ValidatorError):
    """The model cannot be validated at all (not staged, no config); the message says what to do first."""


# --------------------------------------------------------------------------------------------- inputs


def container_read_url(store: RegionalBlobStore, region: str, *, valid_for: timedelta) -> str:
    """The weights container URL of `region` with a read+list SAS (what runtime images fetch weights with)."""
    cfg = store.settings.regions[region]
    service = store.service(region)
    account = service.account_name or cfg.account
    start = datetime.now(UTC) - timedelta(minutes=5)
    expiry = datetime.now(UTC) + valid_for
    key: str | None = None
    if cfg.account_key is not None:
        key = cfg.account_key.get_secret_value()
    elif cfg.connection_string is not None:
        key = parse_connection_string(cfg.connection_string.get_secret_value()).get("AccountKey")
    permission = ContainerSasPermissions(read=True, list=True)
    try:
        if key is not None:
            token = generate_container_sas(
                account, store.container_name, account_key=key, permission=permission, expiry=expiry, start=start
            )
        else:
            delegation = service.get_user_delegation_key(start, expiry)
            token = generate_container_sas(
                account,
                store.container_name,
                user_delegation_key=delegation,
                permission=permission,
                expiry=expiry,
                start=start,
            )
    except AzureError as exc:
        raise translate(exc, "making a read SAS for the weights container", region) from exc
    return f"{store.container(region).url}?{token}"


def _range(store: RegionalBlobStore, region: str, name: str, offset: int, length: int) -> bytes:
    try:
        data: bytes = store.blob(region, name).download_blob(offset=offset, length=length).readall()
    except AzureError as exc:
        raise translate(exc, f"reading {name}", region) from exc
    return data


def safetensors_parameters(store: RegionalBlobStore, region: str, name: str, max_header: int) -> dict[str, int]:
    """dtype -> parameter count from one staged safetensors file's header (two range reads)."""
    (length,) = struct.unpack("<Q", _range(store, region, name, 0, 8))
    if length <= 0 or length > max_header:
        raise ValidationFlowError(f"{name}: safetensors header of {length} bytes is out of bounds")
    header = json.loads(_range(store, region, name, 8, length))
    counts: dict[str, int] = {}
    for tensor, info in header.items() if isinstance(header, dict) else ():
        if tensor == "__metadata__" or not isinstance(info, dict):
            continue
        count = 1
        for dim in info.get("shape", []):
            count *= int(dim)
        counts[str(info.get("dtype"))] = counts.get(str(info.get("dtype")), 0) + count
    return counts


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
            part = safetensors_parameters(store, region, prefix + name, settings.screening.max_header_bytes)
            for dtype, count in part.items():
                parameters[dtype] = parameters.get(dtype, 0) + count
    return plan(weights.ref.repo_id, config, parameters or None, settings, revision=weights.ref.revision)


def _pool_of(settings: Settings, template: DeploymentTemplate) -> tuple[str, str]:
    family = settings.accelerators.get(template.accelerator_family)
    if family is None:
        raise ValidationFlowError(f"accelerator family {template.accelerator_family} is not in curation.toml")
    return family.pool, family.region or settings.storage.primary_region


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-")[:100]


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
        f"# Cell `{t.id}`: **{result.verdict.value}**",
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
            lines.append("| " + " | ".join(_cell(row.get(k)) for k in keys) + " |")
        if plot is not None:
            lines += ["", f"Latency vs throughput plot: `{plot}`"]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else ("" if value is None else str(value))


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
    args = recipe.launch_args(ref.repo_id, port=port, host="127.0.0.1")
    env = {
        **recipe.launch_env(ref.repo_id, port=port),
        "MODEL_BLOB_URL": url,
        "MODEL_ID": ref.repo_id,
        "MODEL_REVISION": ref.revision,
        **_entrypoint_env(settings, region),
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


def _entrypoint_env(settings: Settings, region: str) -> dict[str, str]:
    """What the shared entrypoint needs besides the blob URL: the region (for its messages) and the public key
    it verifies the weights' model-signing signature with (builders/recipes/model_entrypoint.py)."""
    public = public_pem(signing_key(settings).public_key()).decode()
    return {"MODEL_REGION": region, "MODEL_SIGNING_PUBLIC_KEY": public}


def _finish(settings: Settings, ref: ModelRef, result: ValidationResult, plot: Path | None = None) -> ValidationResult:
    result = result.model_copy(update={"finished_at": utcnow()})
    with CatalogStore.from_settings(settings) as catalog:
        catalog.record_validation(ref, result)
    create_markdown_artifact(
        key=_slug(f"cell-{result.template.id}"),
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
            if metrics:
                publish_table_artifact(
                    metrics, key=_slug(f"bench-{template.id}"), description=f"benchmark {template.id}"
                )
                if len(metrics) > 1:
                    plot = plot_sweep(
                        metrics, settings.data_dir / "validation" / template.id / "sweep.png", template.id
                    )
            publish_artifact(report, key=_slug(f"conformance-{template.id}"))
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
        f"# Validation of `{ref}`",
        "",
        "| template | runtime | pool family | verdict | reason |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in results:
        reason = r.reason.replace("|", "\\|").replace("\n", " ")[:300]
        t = r.template
        lines.append(f"| `{t.id}` | {t.runtime} | {t.accelerator_family} | {r.verdict.value} | {reason} |")
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
    planned = tuple(templates) if templates is not None else plan_staged(settings, weights)
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
        key=_slug(f"validation-{ref.repo_id}"),
        markdown=_summary(ref, results),
        description=f"Validation cells of {ref}",
    )
    passed = [r.template.id for r in results if r.verdict is ValidationVerdict.PASSED]
    others = [f"{r.template.id}: {r.verdict.value}" for r in results if r.verdict is not ValidationVerdict.PASSED]
    with CatalogStore.from_settings(settings) as catalog:
        catalog.record_stage(
            StageResult(
                ref=ref,
                stage=StageName.VALIDATE,
                outcome=StageOutcome.OK if passed else StageOutcome.FAILED,
                reason=f"{len(passed)} of {len(results)} template(s) passed"
                + (f" ({'; '.join(others)})" if others else ""),
                policy_digest=settings.policy_digest(),
                run_id=str(flow_run.id or "") or None,
                payload={"passed": passed},
            )
        )
    return results
