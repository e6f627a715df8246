"""Stage 5: one validation cell (`validate-cell`), and the planning of a staged model's templates.

`plan_staged` plans the templates (validators/planner.py) from the staged config.json and safetensors headers;
`flows/validate_model.py` (`validate-model`) decides which cells run and where, and runs each through
`validate_cell`.

`validate_cell` (one template): verify the image signature and digest, verify the staged weights' signature and
every blob in the region of the template's accelerator pool, start the runtime image with those weights
(validators/containers.py), wait for its health probe, run the conformance suite and a small bounded benchmark,
stop and remove the container, and record a `ValidationResult` whose verdict follows the policy in
`[validation]` (validators/cells.py). Markdown and table artifacts show the conformance table and the benchmark.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from docker.errors import DockerException
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from builders.derive import REFERENCE
from builders.errors import BuildersError
from flows.settings import settings_from
from flows.stage import verify_staged
from registry.artifacts import artifact_key, cell, code
from registry.blob_sas import container_read_url
from registry.blobs import RegionalBlobStore, model_prefix
from registry.catalog import CatalogStore
from registry.derived_records import DerivedArtifacts, DerivedGguf
from registry.errors import RegistryError
from registry.image_signatures import verify_image
from registry.keys import public_pem, signing_key
from registry.net import LOOPBACK, free_port
from registry.quotas import sites
from registry.runtimes import RuntimeSpecError, get_runtime
from registry.schema import (
    BenchmarkMetrics,
    CellStatus,
    ConformanceReport,
    DeploymentTemplate,
    ModelRef,
    RuntimeImage,
    StagedWeights,
    StageName,
    StageOutcome,
    ValidationResult,
    ValidationVerdict,
    utcnow,
)
from registry.settings import Settings
from scanners.safetensors_headers import scan_safetensors_file
from validators.agreement import Agreement, greedy_answers, token_agreement
from validators.bench_report import flat_row, plot_sweep, publish_table_artifact
from validators.cells import TRANSCRIPTION_BENCHMARK, benchmark_kind, cell_verdict, slo_gate, suite_task
from validators.conformance import publish_artifact, report_markdown, run_suite
from validators.conformance_checks.base import Target
from validators.containers import LABEL_CELL, ContainerSpec, run_container
from validators.errors import ValidatorError
from validators.planner import GGUF_RUNTIME, gguf_templates, is_derived_gguf, plan
from validators.revalidation import cell_inputs
from validators.tasks import detect_task, read_evidence
from validators.throughput import LoadSpec, run_benchmark
from validators.transcription_bench import TranscriptionLoad, run_transcription_benchmark

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
    ref = weights.ref
    derived = recorded_derivation(settings, weights)
    quantizations = tuple(g.quantization for g in derived.ggufs if g.quantization != REFERENCE) if derived else ()
    planned = plan(ref.repo_id, config, parameters or None, settings, revision=ref.revision, task=task_name)
    quantized = gguf_templates(
        ref.repo_id, config, parameters or None, settings, quantizations, revision=ref.revision, task=task_name
    )
    return planned + quantized


def recorded_derivation(
    settings: Settings, weights: StagedWeights, catalog: CatalogStore | None = None
) -> DerivedArtifacts | None:
    """The GGUF files derived from this staging of the model (flows/derive.py), None when none were."""
    if catalog is None:
        with CatalogStore.from_settings(settings) as own:
            return recorded_derivation(settings, weights, own)
    result = catalog.stage_result(weights.ref, StageName.DERIVE)
    if result is None or result.outcome is not StageOutcome.OK or weights.signature is None:
        return None
    derived = DerivedArtifacts.model_validate(result.payload)
    return derived if derived.source_signature_digest == weights.signature.signature_digest else None


def cell_weights(
    settings: Settings, template: DeploymentTemplate, weights: StagedWeights
) -> tuple[StagedWeights, _Derived | None]:
    """What a cell runs on: the staged weights, or for a llama.cpp template the GGUF derived from them (its
    `quantization`, else the f16 one) as its own staging (its file and signature: a new derivation is a new input
    of the cell), with the f16 reference a quantized GGUF's outputs are compared with (`is_derived_gguf`)."""
    if template.runtime != GGUF_RUNTIME:
        return weights, None
    quantization = template.quantization or REFERENCE
    derived = recorded_derivation(settings, weights)
    gguf = derived.gguf(quantization) if derived is not None else None
    reference = derived.gguf(REFERENCE) if derived is not None else None
    if gguf is None or reference is None:
        raise ValidationFlowError(
            f"{template.id} serves a {quantization} GGUF not derived from this staging of {weights.ref}; "
            "list it in [derive] quantizations and run the model's chain again (its derive step makes it)"
        )
    files = {"files": (gguf.file,), "signature": gguf.signature, "total_bytes": gguf.file.size}
    return weights.model_copy(update=files), _Derived(gguf, reference if is_derived_gguf(template) else None)


def _home_region(settings: Settings, template: DeploymentTemplate) -> str:
    found = sites(settings, template.accelerator_family)
    if not found:
        raise ValidationFlowError(f"accelerator family {template.accelerator_family} is not in curation.toml")
    return found[0].region


# --------------------------------------------------------------------------------------------- one cell


def current_image(catalog: CatalogStore, runtime: str, vendor: str | None = None) -> RuntimeImage | None:
    """The image a cell of `runtime` (on `vendor`'s accelerators) runs on now: the newest signed one recorded that
    serves that vendor (None: there is none). A wrapped upstream image serves its upstream image's vendor only."""
    return next(
        (
            image
            for image in catalog.images(runtime)
            if image.signature is not None and (vendor is None or not image.vendors or vendor in image.vendors)
        ),
        None,
    )


IMAGE_NOT_AVAILABLE = "image not available"


def image_problem(template: DeploymentTemplate, image: RuntimeImage | None) -> str | None:
    """Why the template's runtime has no image for its vendor (None: `image` is the one to run). From the
    runtime's declaration (registry/runtimes/: e.g. no ROCm vLLM image, an upstream image not pinned or mirrored),
    else because no signed image of it is recorded."""
    try:
        runtime = get_runtime(template.runtime)
    except RuntimeSpecError as exc:
        return f"{IMAGE_NOT_AVAILABLE}: {exc}"
    why = runtime.image_unavailable(template.vendor)
    if why is None and image is None:
        why = f"no signed {runtime.name} image is recorded; build it: `curate images build --runtime {runtime.name}`"
    return f"{IMAGE_NOT_AVAILABLE}: {why}" if why is not None else None


def _image_or_why_not(settings: Settings, template: DeploymentTemplate) -> RuntimeImage | str:
    """The signed image a cell of `template` runs on, or why there is none (`image_problem`)."""
    with CatalogStore.from_settings(settings) as catalog:
        image = current_image(catalog, template.runtime, template.vendor)
    problem = image_problem(template, image)
    if problem is not None or image is None:
        return problem or IMAGE_NOT_AVAILABLE
    return image


def _image_not_available(result: ValidationResult, reason: str) -> ValidationResult:
    return result.model_copy(
        update={"verdict": ValidationVerdict.NOT_VALIDATED, "reason": reason, "not_run": CellStatus.IMAGE_NOT_AVAILABLE}
    )


def _cell_markdown(result: ValidationResult, plot: Path | None) -> str:
    t = result.template
    lines = [
        f"# Cell {code(t.id)}: **{result.status.value}**",
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
    settings: Settings, template: DeploymentTemplate, spec: ContainerSpec, model: str, tokenizer_dir: Path | None
) -> tuple[BenchmarkMetrics, ...] | None:
    """The template's bounded benchmark (`validators.cells.benchmark_kind`): streamed chat (text prompts, also for
    vision-language chat), transcription uploads for speech recognition, none for embeddings."""
    v = settings.validation
    kind = benchmark_kind(template)
    if kind == TRANSCRIPTION_BENCHMARK:
        speech = TranscriptionLoad(
            concurrencies=v.bench_concurrencies,
            max_requests=v.bench_max_requests,
            max_duration_s=v.bench_max_duration_s,
            grace_s=min(30.0, v.bench_max_duration_s),
            clip_seconds=v.bench_audio_seconds,
        )
        return run_transcription_benchmark(spec.base_url + "/v1", model, speech)
    if kind is None:
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


@dataclass(frozen=True)
class _Derived:
    """A llama.cpp cell's GGUF and the f16 reference its outputs are compared with (a derived quantization's)."""

    gguf: DerivedGguf
    reference: DerivedGguf | None

    def env(self, served: DerivedGguf | None = None) -> dict[str, str]:
        served = served or self.gguf
        return {"MODEL_PREFIX": served.prefix, "MODEL_FILE": served.file.name}


def _tokenizer(store: RegionalBlobStore, region: str, weights: StagedWeights, work: Path) -> Path | None:
    """The staged tokenizer.json (its sha256 checked against the staging's record), or None when it has none."""
    staged = next((f for f in weights.files if f.name == "tokenizer.json"), None)
    if staged is None:
        return None
    path = work / "tokenizer" / "tokenizer.json"
    store.download_to(region, model_prefix(weights.ref) + staged.name, path)
    if hashlib.sha256(path.read_bytes()).hexdigest() != staged.sha256:
        raise ValidationFlowError(f"tokenizer.json of {weights.ref} in region {region} is not the staged one")
    return path.parent


def _exercise(
    settings: Settings,
    template: DeploymentTemplate,
    weights: StagedWeights,
    image: RuntimeImage,
    region: str,
    docker_host: str | None,
    work: Path,
    derived: _Derived | None = None,
) -> tuple[ConformanceReport, tuple[BenchmarkMetrics, ...] | None, Agreement | None]:
    runtime = get_runtime(template.runtime)
    ref = weights.ref
    valid = timedelta(seconds=settings.validation.sas_valid_s)
    with RegionalBlobStore(settings.storage, regions=(region,)) as store:
        url = container_read_url(store, region, valid_for=valid)
        tokenizer_dir = _tokenizer(store, region, weights, work)

    # The template's runtime_args carry its knobs as the runtime spells them (registry/runtimes/); the repo id
    # goes to the shared entrypoint only (MODEL_ID), never to the runtime.
    def spec_for(env: dict[str, str]) -> ContainerSpec:
        port = free_port()
        launch = runtime.launch(template.runtime_args, port=port, host=LOOPBACK)
        base = {"MODEL_BLOB_URL": url, "MODEL_ID": ref.repo_id, "MODEL_REVISION": ref.revision}
        return ContainerSpec(
            image=image.pinned,
            command=launch.argv,
            port=port,
            health_path=runtime.health_path,
            environment={**launch.env, **base, **_entrypoint_env(settings, region), **env},
            vendor=template.vendor,
            gpu_count=template.count if template.vendor != "cpu" else 0,
            labels={LABEL_CELL: template.id},
        )

    spec = spec_for(derived.env() if derived is not None else {})
    task_name = suite_task(template.task)
    health = settings.validation.health_timeout_s
    with run_container(spec, health_timeout_s=health, docker_host=docker_host):
        report = run_suite(
            Target(spec.base_url + "/v1", ref.repo_id, task=task_name, tool_call_parser=template.tool_call_parser)
        )
        metrics = _benchmark(settings, template, spec, ref.repo_id, tokenizer_dir)
        compared = derived.reference if derived is not None else None
        answers = greedy_answers(spec.base_url + "/v1", ref.repo_id) if compared is not None else ()
    if derived is None or compared is None:
        return report, metrics, None
    if tokenizer_dir is None:
        raise ValidationFlowError(f"{ref} has no staged tokenizer.json: the output agreement cannot be measured")
    reference = spec_for(derived.env(compared))
    with run_container(reference, health_timeout_s=health, docker_host=docker_host):
        references = greedy_answers(reference.base_url + "/v1", ref.repo_id)
    agreement = token_agreement(tokenizer_dir / "tokenizer.json", references, answers, compared.file.name)
    return report, metrics, agreement


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


def _judged(
    settings: Settings,
    result: ValidationResult,
    image: RuntimeImage,
    report: ConformanceReport,
    metrics: tuple[BenchmarkMetrics, ...] | None,
    agreement: Agreement | None,
) -> ValidationResult:
    """The cell's result with its evidence and verdict (validators/cells.py)."""
    score = agreement.score if agreement is not None else None
    verdict = cell_verdict(
        result.template,
        report,
        metrics,
        settings.validation,
        image.version,
        settings.slo,
        agreement=score,
        min_agreement=settings.derive.min_token_agreement,
    )
    return result.model_copy(
        update={
            "token_agreement": score,
            "conformance": report,
            "benchmark": metrics or (),
            "verdict": verdict.verdict,
            "reason": verdict.reason,
            "accepted_deviations": verdict.accepted_deviations,
            "stale_deviations": verdict.stale_deviations,
        }
    )


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
    flow_run_id = str(flow_run.id or "") or None
    result = ValidationResult(
        template=template, verdict=ValidationVerdict.FAILED, flow_run_id=flow_run_id, run_id=run_id
    )
    plot: Path | None = None
    image = _image_or_why_not(settings, template)
    if isinstance(image, str):
        return _finish(settings, ref, _image_not_available(result, image))
    with tempfile.TemporaryDirectory(prefix="cell-") as tmp:
        try:
            region = region or _home_region(settings, template)
            with CatalogStore.from_settings(settings) as catalog:
                weights = catalog.staged(ref)
            if weights is None or weights.signature is None:
                raise ValidationFlowError(f"{ref} is not staged with a signature; run `curate stage {repo_id}` first")
            served, derived = cell_weights(settings, template, weights)
            result = result.model_copy(update={"inputs": cell_inputs(settings, template, served, image)})
            key = signing_key(settings)
            digest = verify_image(image.reference, key.public_key(), expected_digest=image.digest)
            result = result.model_copy(update={"image_digest": digest})
            verify_staged(settings, served, region, derived.gguf.prefix if derived is not None else None)
            signed = served.signature.signature_digest if served.signature is not None else ""
            result = result.model_copy(update={"weights_signature_digest": signed})
            logger.info("image %s and weights of %s verified in %s; starting the runtime", digest, ref, region)
            report, metrics, agreement = _exercise(
                settings, template, weights, image, region, docker_host, Path(tmp), derived
            )
            result = _judged(settings, result, image, report, metrics, agreement)
            plot = _cell_artifacts(settings, template, report, metrics)
        except _CELL_ERRORS as exc:
            logger.warning("cell %s failed: %s", template.id, exc)
            result = result.model_copy(update={"verdict": ValidationVerdict.FAILED, "reason": str(exc)[:4000]})
    result = _finish(settings, ref, result, plot)
    logger.info("cell %s: %s (%s)", template.id, result.verdict.value, result.reason)
    return result
