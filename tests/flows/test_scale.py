"""Issue 14's "Done when" for the fan-out, end to end: `weekly_curation` dispatching one `curate-model` flow run
per model to two real `prefect worker` processes of a process pool, against the Hub test server, Azurite, a
private dockerd + registry and the hf-serve image (CPU cells run in the workers' flow runs).

One test walks the weeks in order (each step builds on the state the previous one left):
1. a requested repository that does not resolve and a repository whose downloads fail (the Hub answers 500 for
   its weight files): both rows end failed with their stage and reason, every other model publishes, the run
   record is finished with its summary;
2. a new revision of one model; the worker running its flow run and the run's process are SIGKILLed while it
   stages: Prefect's heartbeats stop, the crash automation marks the run Crashed, it is dispatched again and the
   other worker finishes it; the entry equals the one a clean run gave. A model with nothing new goes through its
   chain without running a cell: its row says "unchanged since <run 1>";
3. the runtime image is rebuilt (a new digest): the published entry is re-validated on it and moves to it;
4. a broken rebuild: its cells fail, the entry keeps its binding and says so.

Runtime: ~5-11 min on the shared 2-core machine (two tiny models, the default 90 s heartbeat timeout).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.deployments.runner import RunnerDeployment

from builders.images import BuiltImage
from devstack.docker_engine import DockerStack
from devstack.fleet import clone_repo, keep_only
from devstack.hub_server import HubServer
from devstack.samples import build_samples, bump_revision
from flows.curate import weekly_curation
from flows.fanout import MODEL_FLOW
from flows.model import curate_model
from flows.placement import pool_has_worker
from registry.blobs import RegionalBlobStore, model_prefix
from registry.catalog import CatalogStore
from registry.schema import CatalogEntry, EntryStatus, ModelOutcome, ModelRef, ModelRow, RunSummary
from registry.settings import Settings, load_settings
from tests.fixtures.docker import derived_image, record_signed_image
from tests.flows.test_weekly import latest_artifact, stable_content

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.timeout(1800)]

POOL = "curation-scale-test"
LLAMA = "curation-samples/tiny-llama-chat"
QWEN = "curation-samples/tiny-qwen2-chat"
FLAKY = "curation-samples/tiny-flaky-downloads"
GONE = "curation-samples/no-longer-there"
REPO_ROOT = Path(__file__).resolve().parents[2]


def rows_of(settings: Settings, summary: RunSummary) -> dict[str, ModelRow]:
    with CatalogStore.from_settings(settings) as store:
        return {row.repo_id: row for row in store.model_rows(summary.run_id)}


def published(settings: Settings) -> dict[str, CatalogEntry]:
    with CatalogStore.from_settings(settings) as store:
        return {e.model.repo_id: e for e in store.entries() if e.status is not EntryStatus.WITHDRAWN}


def model_runs(repo_id: str, run_id: str) -> list[FlowRun]:
    """The `curate-model` flow runs of one model in one curation run, oldest first."""
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[MODEL_FLOW])))
    mine = [r for r in runs if r.parameters.get("repo_id") == repo_id and r.parameters.get("run_id") == run_id]
    return sorted(mine, key=lambda r: r.created or 0)


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


class WorkerKiller(threading.Thread):
    """Watches the model's flow runs; once one is running and has written a blob of `ref`, SIGKILLs its process
    and its worker. Records which worker ran each of the model's flow runs (flow run id -> worker pid)."""

    def __init__(self, ref: ModelRef, settings: Settings, workers: list[subprocess.Popen[bytes]]) -> None:
        super().__init__(daemon=True)
        self.ref, self.settings, self.workers = ref, settings, {w.pid for w in workers}
        self.ran_on: dict[UUID, int] = {}
        self.killed: tuple[UUID, int] | None = None
        self.stop = threading.Event()

    def _blob_written(self) -> bool:
        with RegionalBlobStore(self.settings.storage) as blobs:
            container = blobs.container(self.settings.storage.primary_region)
            prefix = model_prefix(self.ref)
            return any(container.list_blobs(name_starts_with=prefix, include=["uncommittedblobs"]))

    def _running(self) -> list[FlowRun]:
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[MODEL_FLOW])),
                flow_run_filter=FlowRunFilter(state={"type": {"any_": [StateType.RUNNING]}}),
            )
        return [r for r in runs if r.parameters.get("revision") == self.ref.revision and r.infrastructure_pid]

    def run(self) -> None:
        while not self.stop.is_set():
            for flow_run in self._running():
                pid = int(str(flow_run.infrastructure_pid).rsplit(":", 1)[-1])
                try:
                    worker = _parent(pid)
                except (OSError, IndexError, ValueError):
                    continue
                self.ran_on.setdefault(flow_run.id, worker)
                if self.killed is None and worker in self.workers and self._blob_written():
                    os.kill(pid, signal.SIGKILL)
                    os.kill(worker, signal.SIGKILL)
                    self.killed = (flow_run.id, worker)
            time.sleep(0.1)


def _overrides(storage: dict[str, Any], docker_stack: DockerStack) -> dict[str, Any]:
    return {
        "storage": storage,
        "hub": {"max_retries": 0},
        "discovery": {"requested": [GONE]},
        "images": {"registry": docker_stack.registry, "runtimes": []},  # the test records its images itself
        "orchestration": {
            "dispatch": "deployment",
            "pool": POOL,
            "max_parallel_models": 3,
            "heartbeat_timeout_s": 90,  # the default: 3 heartbeats; 45 s let a loaded machine crash live runs
            "model_timeout_s": 900,
        },
        "validation": {
            "dispatch": "inline",
            "inline_pools": ["cpu"],
            "capacity_deadline_s": 0,
            "health_timeout_s": 300.0,
            "bench_concurrencies": [1],
            "bench_max_requests": 2,
            "bench_max_duration_s": 30.0,
            "bench_input_tokens": 16,
            "bench_output_tokens": 8,
        },
    }


def test_a_weekly_run_fans_out_isolates_failures_and_survives_a_killed_worker(
    prefect_harness: None,
    azurite_env: Callable[[], dict[str, Any]],
    hub_factory: Callable[..., HubServer],
    docker_stack: DockerStack,
    hf_serve_image: BuiltImage,
    process_workers: Callable[[str], Callable[[], subprocess.Popen[bytes]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    samples = build_samples(tmp_path / "store", include_real=False)
    store = samples.store()
    keep_only(store, [LLAMA, QWEN])
    clone_repo(store, LLAMA, [FLAKY])
    hub = hub_factory(store)
    # Screening reads headers by range; only whole-file downloads of the weights fail, whatever the retries.
    hub.faults.add(rf"^/{FLAKY}/resolve/.*\.safetensors$", status=500, times=None, method="GET", ranged=False)
    storage = azurite_env()
    monkeypatch.setenv("CURATE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DOCKER_HOST", docker_stack.docker_host)
    monkeypatch.setenv("CURATE_HUB__ENDPOINT", hub.url)
    overrides = _overrides(storage, docker_stack)
    settings = load_settings(**overrides)
    record_signed_image(settings, hf_serve_image.reference, hf_serve_image.digest)
    deployment = curate_model.to_deployment(
        name=POOL, work_pool_name=POOL, job_variables={"working_dir": str(REPO_ROOT)}
    )
    assert isinstance(deployment, RunnerDeployment)
    start_worker = process_workers(POOL)
    deployment.apply()
    workers = [start_worker(), start_worker()]
    assert pool_has_worker(POOL, 90.0)

    # ---- week 1: two failures, each its own row; the others publish; the run is finished with its summary.
    first = weekly_curation(overrides=overrides)
    rows = rows_of(settings, first)
    assert first.status == "completed" and first.finished_at is not None
    assert rows[GONE].outcome is ModelOutcome.FAILED and rows[GONE].stage == "discover"
    assert "did not resolve" in rows[GONE].reason and rows[GONE].revision is None
    assert rows[FLAKY].outcome is ModelOutcome.FAILED and rows[FLAKY].stage == "stage", rows[FLAKY]
    assert "500" in rows[FLAKY].reason or "injected fault" in rows[FLAKY].reason, rows[FLAKY].reason
    for repo_id in (LLAMA, QWEN):
        assert rows[repo_id].outcome is ModelOutcome.PUBLISHED, (rows[repo_id], latest_artifact("curation-run"))
        (flow_run,) = model_runs(repo_id, first.run_id)
        assert flow_run.deployment_id is not None and flow_run.state_type is StateType.COMPLETED
    assert set(published(settings)) == {LLAMA, QWEN}
    assert first.outcomes == {"failed": 2, "published": 2}
    table = latest_artifact("curation-run")
    assert f"`{GONE}`" in table and f"`{FLAKY}`" in table and "failed at stage" in table

    # ---- week 2: a worker is killed mid-stage; its model is dispatched again and finished by the other one.
    store.delete_repo(FLAKY)  # (its failure is shown; the later weeks need not pay for its retries)
    before = published(settings)
    revision = bump_revision(store, QWEN)
    new_ref = ModelRef(repo_id=QWEN, revision=revision)
    with CatalogStore.from_settings(settings) as catalog:
        llama_cells = len(catalog.validations(before[LLAMA].model))
    killer = WorkerKiller(new_ref, settings, workers)
    killer.start()
    try:
        every = {**overrides, "discovery": {**overrides["discovery"], "skip_already_curated": False}}
        second = weekly_curation(overrides=every)
    finally:
        killer.stop.set()
        killer.join(timeout=10)
    assert killer.killed is not None, "the model's flow run was never seen running on a worker"
    rows = rows_of(settings, second)
    assert rows[QWEN].outcome is ModelOutcome.PUBLISHED and rows[QWEN].attempts == 2, rows[QWEN]
    crashed, retried = model_runs(QWEN, second.run_id)
    assert crashed.id == killer.killed[0] and crashed.state_type is StateType.CRASHED
    assert retried.state_type is StateType.COMPLETED
    survivor = ({w.pid for w in workers} - {killer.killed[1]}).pop()
    assert killer.ran_on.get(retried.id) == survivor
    after = published(settings)
    assert after[QWEN].model == new_ref and stable_content(after[QWEN]) == stable_content(before[QWEN])
    assert rows[LLAMA].outcome is ModelOutcome.UNCHANGED and rows[LLAMA].unchanged_since == first.run_id
    assert f"unchanged since {first.run_id}" in rows[LLAMA].stages["validate"]
    with CatalogStore.from_settings(settings) as catalog:
        assert len(catalog.validations(before[LLAMA].model)) == llama_cells  # no cell ran again
    assert after[LLAMA] == before[LLAMA]

    # ---- week 3: the runtime image is rebuilt; every entry on it is re-validated there and moves to it.
    rebuilt_ref, rebuilt = derived_image(docker_stack, hf_serve_image.reference, "rebuilt")
    record_signed_image(settings, rebuilt_ref, rebuilt)
    third = weekly_curation(overrides=overrides)
    moved = published(settings)
    for repo_id in (LLAMA, QWEN):
        assert moved[repo_id].images["hf-serve"].endswith(rebuilt), rows_of(settings, third)[repo_id]
        assert moved[repo_id].status is EntryStatus.PUBLISHED and not moved[repo_id].status_reason

    # ---- week 4: a broken rebuild: its cells fail, the entries keep the working image and say so.
    broken_ref, broken = derived_image(docker_stack, hf_serve_image.reference, "broken", entrypoint=["/bin/false"])
    record_signed_image(settings, broken_ref, broken)
    fourth = weekly_curation(overrides=overrides)
    kept = published(settings)
    fourth_rows = rows_of(settings, fourth)
    for repo_id in (LLAMA, QWEN):
        assert kept[repo_id].images["hf-serve"].endswith(rebuilt)
        why = (kept[repo_id].status_reason, fourth_rows[repo_id], latest_artifact("curation-run"))
        assert kept[repo_id].status_reason.startswith("keeps hf-serve image"), why
        assert broken in kept[repo_id].status_reason
        assert fourth_rows[repo_id].outcome is ModelOutcome.NOT_PUBLISHED
