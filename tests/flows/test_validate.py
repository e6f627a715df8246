"""Stage 5 validation cells for real: the tiny sample staged into Azurite, the hf-serve image in the local
registry, the cell run in-process (dispatch "inline"), the container started, probed, tested and removed.

One `validate_model` run covers every cell status: a CPU cell that passes (validated) with hf-serve's accepted
deviations listed; a GPU cell run inline on a stand-in vLLM image that fails (this engine has no GPU to satisfy
its device request) without stopping the others; a GPU pool with no worker that ends not-validated "no capacity";
and an MI300 cell whose image is not available (the vLLM image built here is CUDA only). Two more cells show
that a moved image tag and a wrong signing key end FAILED before any container starts.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.deployments.runner import RunnerDeployment

from builders.images import BuiltImage, build_image
from builders.recipes import get_recipe
from devstack.docker_engine import BASE_IMAGE, DockerStack
from devstack.hub_server import HubServer
from devstack.samples import SampleSet
from flows.placement import NO_CAPACITY, pool_has_worker
from flows.stage import stage_weights
from flows.validate import plan_staged, validate_cell
from flows.validate_model import validate_model
from registry.catalog import CatalogStore
from registry.keys import signing_key
from registry.schema import (
    CellStatus,
    CheckStatus,
    DeploymentTemplate,
    StagedWeights,
    ValidationVerdict,
)
from registry.settings import Settings, load_settings
from tests.fixtures.docker import derived_image, record_signed_image
from validators.containers import LABEL_CELL, cell_containers

TINY = "curation-samples/tiny-llama-chat"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"

pytestmark = [pytest.mark.integration, pytest.mark.docker]


@pytest.fixture
def cell_hub(sample_set: SampleSet, hub_factory: Callable[..., HubServer]) -> HubServer:
    """The Hub test server the cell's model is staged from (its request log shows what a cell asks of it)."""
    return hub_factory(sample_set.store())


@pytest.fixture
def cell_env(
    prefect_harness: None,
    azurite_env: Callable[[], dict[str, Any]],
    cell_hub: HubServer,
    docker_stack: DockerStack,
    hf_serve_image: BuiltImage,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[dict[str, Any], StagedWeights]]:
    """The tiny sample staged (own data dir, key, container) and a signed hf-serve image in the catalog."""
    monkeypatch.setenv("CURATE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DOCKER_HOST", docker_stack.docker_host)
    monkeypatch.setenv("CURATE_HUB__ENDPOINT", cell_hub.url)
    overrides: dict[str, Any] = {
        "storage": azurite_env(),
        "hub": {"max_retries": 0},
        "validation": {
            "dispatch": "inline",
            "capacity_deadline_s": 1.0,
            "health_timeout_s": 180.0,
            "bench_concurrencies": [1, 2],
            "bench_max_requests": 2,
            "bench_max_duration_s": 30.0,
            "bench_input_tokens": 16,
            "bench_output_tokens": 4,
        },
    }
    weights = stage_weights(TINY, overrides=overrides, regions=["eastus", "westeurope"])
    settings = load_settings(**overrides)
    record_signed_image(settings, hf_serve_image.reference, hf_serve_image.digest)
    yield overrides, weights


def _cpu_template(settings: Settings, weights: StagedWeights) -> DeploymentTemplate:
    templates = plan_staged(settings, weights)
    cpu = [t for t in templates if t.accelerator_family == "cpu"]
    assert len(cpu) == 1 and cpu[0].runtime == "hf-serve", [t.id for t in templates]
    return cpu[0]


def _no_cell_containers(template: DeploymentTemplate, docker_host: str) -> None:
    assert cell_containers({LABEL_CELL: template.id}, docker_host) == []


def test_validate_model_passes_cpu_cell_and_isolates_failing_and_capacityless_cells(
    cell_env: tuple[dict[str, Any], StagedWeights],
    docker_stack: DockerStack,
    hf_serve_image: BuiltImage,
    cell_hub: HubServer,
) -> None:
    base, weights = cell_env
    cell_hub.requests.clear()  # staging read the model from the Hub; the cells must not
    # The A100 pool runs inline here on a stand-in vLLM image (on the hf-serve build, signed as vllm): its cell starts
    # and fails, as this engine has no GPU for its device request. The H100 pool exists with no worker.
    overrides = {**base, "validation": {**base["validation"], "inline_pools": ["cpu", "gpu-a100"]}}
    settings = load_settings(**overrides)
    stand_in, stand_in_digest = derived_image(docker_stack, hf_serve_image.reference, "vllm-stand-in")
    record_signed_image(settings, stand_in, stand_in_digest, runtime="vllm")
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name="gpu-h100", type="process"), overwrite=True)
    results = validate_model(TINY, weights.ref.revision, overrides=overrides)

    by_family = {r.template.accelerator_family: r for r in results}
    assert set(by_family) == {"cpu", "A100_80GB", "H100_80GB", "MI_300_192GB"}
    failed = by_family["A100_80GB"]
    assert failed.status is CellStatus.FAILED and failed.verdict is ValidationVerdict.FAILED
    assert "refused to start" in failed.reason, failed.reason
    no_worker = by_family["H100_80GB"]
    assert no_worker.status is CellStatus.NO_CAPACITY and no_worker.reason.startswith(NO_CAPACITY)
    amd = by_family["MI_300_192GB"]
    assert amd.status is CellStatus.IMAGE_NOT_AVAILABLE and amd.verdict is ValidationVerdict.NOT_VALIDATED
    assert "for nvidia only, not amd" in amd.reason

    cell = by_family["cpu"]
    assert cell.verdict is ValidationVerdict.PASSED, cell.reason
    assert cell_hub.requests.entries() == [], "a validation cell asked the Hub"
    assert cell.image_digest == hf_serve_image.digest
    assert weights.signature is not None
    assert cell.weights_signature_digest == weights.signature.signature_digest
    assert cell.conformance is not None and cell.conformance.task == "chat"
    statuses = {c.name: c.status for c in cell.conformance.checks}
    assert statuses["chat.shape"] is CheckStatus.PASS
    accepted = {d.split(":", 1)[0] for d in cell.accepted_deviations}
    assert "stream.done" in accepted and "models.listing" in accepted
    assert accepted <= set(settings.validation.deviations["hf-serve"])
    assert cell.benchmark and sum(m.requests for m in cell.benchmark) >= 2
    assert all(m.errors == 0 for m in cell.benchmark)
    _no_cell_containers(cell.template, docker_stack.docker_host)
    with CatalogStore.from_settings(settings) as catalog:
        recorded = {r.template.id: r.verdict for r in catalog.validations(weights.ref)}
    assert recorded[cell.template.id] is ValidationVerdict.PASSED
    assert recorded[by_family["H100_80GB"].template.id] is ValidationVerdict.NOT_VALIDATED


def test_moved_image_tag_fails_the_cell_before_any_container_starts(
    cell_env: tuple[dict[str, Any], StagedWeights], docker_stack: DockerStack, hf_serve_image: BuiltImage
) -> None:
    overrides, weights = cell_env
    settings = load_settings(**overrides)
    client = docker.DockerClient(base_url=docker_stack.docker_host)
    tag = f"{docker_stack.registry}/hf-serve:moved-tag-test"
    try:
        client.images.get(hf_serve_image.reference).tag(tag)
        client.images.push(tag)
        record_signed_image(settings, tag, hf_serve_image.digest)  # newest signed image: the one the cell uses
        client.images.get(BASE_IMAGE).tag(tag)  # now the tag points at another image
        client.images.push(tag)
    finally:
        client.close()
    template = _cpu_template(settings, weights)
    result = validate_cell(TINY, weights.ref.revision, template, overrides)
    assert result.verdict is ValidationVerdict.FAILED
    assert hf_serve_image.digest in result.reason or "digest" in result.reason
    assert result.conformance is None and result.image_digest == ""
    _no_cell_containers(template, docker_stack.docker_host)


def test_wrong_key_fails_the_cell_before_any_container_starts(
    cell_env: tuple[dict[str, Any], StagedWeights], docker_stack: DockerStack, tmp_path: Path
) -> None:
    overrides, weights = cell_env
    settings = load_settings(**overrides)
    template = _cpu_template(settings, weights)
    other = {**overrides, "data_dir": str(tmp_path / "other-key")}
    other_settings = load_settings(**other)
    # Same catalog, another signing key: neither the image nor the weights verify with it.
    other["catalog"] = {"url": settings.catalog_url}
    assert signing_key(other_settings).key_id != signing_key(settings).key_id
    result = validate_cell(TINY, weights.ref.revision, template, other)
    assert result.verdict is ValidationVerdict.FAILED
    assert "signature" in result.reason
    assert result.conformance is None and not result.benchmark
    _no_cell_containers(template, docker_stack.docker_host)


@pytest.fixture(scope="session")
def infinity_image(docker_stack: DockerStack) -> BuiltImage:
    """The infinity-emb CPU embeddings image, built offline from cached wheels and pushed once per session."""
    return build_image(get_recipe("infinity"), docker_host=docker_stack.docker_host, registry=docker_stack.registry)


def test_embeddings_sample_passes_on_the_infinity_cpu_runtime(
    prefect_harness: None,
    azurite_env: Callable[[], dict[str, Any]],
    sample_set: SampleSet,
    hub_factory: Callable[..., HubServer],
    docker_stack: DockerStack,
    infinity_image: BuiltImage,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CURATE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DOCKER_HOST", docker_stack.docker_host)
    monkeypatch.setenv("CURATE_HUB__ENDPOINT", hub_factory(sample_set.store()).url)
    overrides: dict[str, Any] = {
        "storage": azurite_env(),
        "hub": {"max_retries": 0},
        "validation": {"dispatch": "inline", "health_timeout_s": 180.0},
    }
    weights = stage_weights(MINILM, overrides=overrides, regions=["eastus"])
    settings = load_settings(**overrides)
    record_signed_image(settings, infinity_image.reference, infinity_image.digest, runtime="infinity")
    template = next(t for t in plan_staged(settings, weights) if t.accelerator_family == "cpu")
    assert template.runtime == "infinity" and template.task == "embeddings"

    result = validate_cell(MINILM, weights.ref.revision, template, overrides)

    assert result.verdict is ValidationVerdict.PASSED, result.reason
    assert result.image_digest == infinity_image.digest
    assert weights.signature is not None
    assert result.weights_signature_digest == weights.signature.signature_digest
    assert result.conformance is not None and result.conformance.task == "embeddings"
    statuses = {c.name: c.status for c in result.conformance.checks}
    for name in ("models.listing", "embeddings.shape", "embeddings.dimensions", "embeddings.batch_order"):
        assert statuses[name] is CheckStatus.PASS, name
    accepted = {d.split(":", 1)[0] for d in result.accepted_deviations}
    assert accepted <= set(settings.validation.deviations["infinity"])
    assert not result.benchmark  # the throughput benchmark is a chat benchmark
    _no_cell_containers(template, docker_stack.docker_host)


WORKER_POOL = "validate-worker-test"
REPO_ROOT = Path(__file__).resolve().parents[2]


def test_deployment_dispatch_runs_the_cell_on_a_pool_worker(
    cell_env: tuple[dict[str, Any], StagedWeights],
    docker_stack: DockerStack,
    hf_serve_image: BuiltImage,
    process_workers: Callable[[str], Callable[[], subprocess.Popen[bytes]]],
    tmp_path: Path,
) -> None:
    base, weights = cell_env
    overrides = {
        **base,
        "accelerators": {"cpu": {"pool": WORKER_POOL}},
        "validation": {**base["validation"], "dispatch": "deployment", "capacity_deadline_s": 60.0},
    }
    settings = load_settings(**overrides)
    template = _cpu_template(settings, weights)
    deployment = validate_cell.to_deployment(
        name=WORKER_POOL, work_pool_name=WORKER_POOL, job_variables={"working_dir": str(REPO_ROOT)}
    )
    assert isinstance(deployment, RunnerDeployment)
    start_worker = process_workers(WORKER_POOL)
    deployment.apply()
    start_worker()
    assert pool_has_worker(WORKER_POOL, 60.0)

    results = validate_model(TINY, weights.ref.revision, overrides=overrides, templates=[template])

    assert len(results) == 1
    cell = results[0]
    log = (tmp_path / f"{WORKER_POOL}-1.log").read_text()[-3000:]
    assert cell.verdict is ValidationVerdict.PASSED, cell.reason + log
    assert cell.flow_run_id  # recorded by the worker's flow run, read back from the catalog store
    assert cell.image_digest == hf_serve_image.digest
    _no_cell_containers(template, docker_stack.docker_host)
