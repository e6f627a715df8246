"""The stack of the scale benchmark (benchmarks/bench_scale.py): PostgreSQL, a Prefect server on it, the Hub test
server with N sample models and a per-request latency, Azurite, dockerd + registry with the stand-in runtime
image, and process workers on demand. Every process is started here and stopped by pid (ExitStack callbacks)."""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from builders.images import BuiltImage
from builders.recipes.base import Recipe
from devstack.azurite import AzuriteStack, start_azurite, stop_azurite
from devstack.docker_engine import DockerStack, ensure_base_image, start_docker, stop_docker
from devstack.fleet import clone_repo, keep_only
from devstack.hub_server import HubServer
from devstack.net import free_port, wait_for_http
from devstack.postgres import PostgresCluster, start_postgres
from devstack.process import start_process, stop_pid
from devstack.samples import build_samples

REPO_ROOT = Path(__file__).resolve().parent.parent
SOURCE = "curation-samples/tiny-llama-chat"
REGIONS = ("eastus", "westeurope", "southeastasia")  # the regions of curation.toml
PAGE = 200  # the API's largest page
STANDIN = REPO_ROOT / "benchmarks" / "scale_standin.py"
STANDIN_IN_IMAGE = "/opt/standin/scale_standin.py"
# The conformance checks the stand-in answers as an OpenAI server would (it has no seed, stop or logprobs).
REQUIRED_CHAT = [
    "models.listing",
    "chat.shape",
    "chat.role",
    "chat.usage",
    "chat.finish_length",
    "stream.sse_framing",
    "stream.chunk_shape",
    "stream.same_id",
    "stream.role_first_only",
    "stream.final_finish_reason",
    "stream.done",
    "errors.unknown_model",
    "errors.malformed_request",
]


@dataclass
class BenchStack:
    work: Path
    postgres: PostgresCluster
    prefect_url: str
    azurite: AzuriteStack
    docker: DockerStack
    hub: HubServer
    standin: BuiltImage
    standin_recipe: Recipe

    def env(self) -> dict[str, str]:
        """What a worker needs: the Prefect API, the regions' accounts, the Docker Engine."""
        return {
            **os.environ,
            **self.azurite.env(),
            "PREFECT_API_URL": self.prefect_url,
            "PREFECT_WORKER_QUERY_SECONDS": "2",
            "DOCKER_HOST": self.docker.docker_host,
        }

    def validation_policy(self) -> dict[str, Any]:
        return {
            "dispatch": "inline",
            "inline_pools": ["cpu"],
            "capacity_deadline_s": 0,
            "health_timeout_s": 120.0,
            "bench_concurrencies": [1],
            "bench_max_requests": 2,
            "bench_max_duration_s": 30.0,
            "bench_input_tokens": 16,
            "bench_output_tokens": 8,
            "required": {"chat": REQUIRED_CHAT},
        }

    def serve_standin_as_hf_serve(self) -> None:
        """Make the stand-in's recipe hf-serve's recipe in this process, where the weekly run refreshes its images:
        the refresh then checks the stand-in as it checks any image it reuses (the registry's tag, the recorded
        scan, the signature verified again). Workers never build images, so they keep the real recipe."""
        from builders import recipes

        recipes._RECIPES["hf-serve"] = self.standin_recipe

    def record_standin(self, overrides: dict[str, Any]) -> None:
        """Record the stand-in as the signed, gate-passed hf-serve image of this run's catalog (its key)."""
        from builders.signing import sign_image
        from registry.catalog import CatalogStore
        from registry.keys import signing_key
        from registry.schema import RuntimeImage, ScanSummary
        from registry.settings import load_settings

        settings = load_settings(**overrides)
        built = self.standin
        image = RuntimeImage(
            runtime="hf-serve",
            version=self.standin_recipe.version,
            reference=built.reference,
            digest=built.digest,
            recipe_digest=built.recipe_digest,
            scan=ScanSummary(passed=True, policy_digest=settings.policy_digest("images")),
            signature=sign_image(built.reference, built.digest, signing_key(settings)),
        )
        with CatalogStore.from_settings(settings) as store:
            store.record_image(image)

    @contextmanager
    def workers(self, pool: str, count: int) -> Iterator[list[int]]:
        """`count` process workers of a fresh `pool` (one flow run at a time each), the deployment on it."""
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.actions import WorkPoolCreate

        from flows.model import curate_model
        from flows.placement import pool_has_worker

        with get_client(sync_client=True) as client:
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"), overwrite=True)
        deployment = curate_model.to_deployment(
            name=pool, work_pool_name=pool, job_variables={"working_dir": str(REPO_ROOT)}
        )
        deployment.apply()  # type: ignore[union-attr]
        pids = []
        for n in range(1, count + 1):
            name = f"{pool}-{n}"
            argv = [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", "process"]
            argv += ["--name", name, "--limit", "1"]
            proc = start_process(name, argv, log_path=self.work / "logs" / f"{name}.log", env=self.env(), cwd=REPO_ROOT)
            pids.append(proc.pid)
        try:
            if not pool_has_worker(pool, 120.0):
                raise RuntimeError(f"no worker of {pool} came online; see {self.work / 'logs'}")
            time.sleep(3)  # let every worker register before the first dispatch
            yield pids
        finally:
            for pid in pids:
                stop_pid(pid)

    def task_spans(self, name: str, since: float) -> list[tuple[float, float]]:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

        found: list[Any] = []
        with get_client(sync_client=True) as client:
            while batch := client.read_task_runs(
                task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_=name)), limit=PAGE, offset=len(found)
            ):
                found += batch
        return _spans([(r.start_time, r.end_time) for r in found], since)

    def flow_spans(self, name: str, since: float) -> list[tuple[float, float]]:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import FlowFilter, FlowFilterName

        found: list[Any] = []
        with get_client(sync_client=True) as client:
            while batch := client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[name])), limit=PAGE, offset=len(found)
            ):
                found += batch
        return _spans([(r.start_time, r.end_time) for r in found], since)

    def profile(self, since: float) -> dict[str, tuple[int, float]]:
        """Flow and task runs that started after `since`, by name: (how many, seconds in all); where a run spends
        its time. Task names lose their model id and Prefect's suffix; flow runs go by their flow's name."""
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterStartTime,
            TaskRunFilter,
            TaskRunFilterStartTime,
        )

        after = datetime.fromtimestamp(since - 1, tz=UTC)
        totals: dict[str, tuple[int, float]] = {}

        def add(name: str, seconds: float) -> None:
            count, total = totals.get(name, (0, 0.0))
            totals[name] = (count + 1, total + seconds)

        with get_client(sync_client=True) as client:
            flows: dict[Any, str] = {}
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(after_=after)), limit=PAGE
            )
            for run in runs:
                if run.flow_id not in flows:
                    flows[run.flow_id] = client.read_flow(run.flow_id).name
                add(f"flow {flows[run.flow_id]}", run.total_run_time.total_seconds())
            tasks = client.read_task_runs(
                task_run_filter=TaskRunFilter(start_time=TaskRunFilterStartTime(after_=after)), limit=PAGE
            )
            for task in tasks:
                name = re.sub(r"-[0-9a-f]{3}$", "", re.sub(r" \S+/\S+", "", task.name))
                add(f"task {name}", task.total_run_time.total_seconds())
        return dict(sorted(totals.items(), key=lambda item: -item[1][1]))


def _spans(pairs: list[tuple[datetime | None, datetime | None]], since: float) -> list[tuple[float, float]]:
    return [
        (start.timestamp(), end.timestamp())
        for start, end in pairs
        if start is not None and end is not None and start.timestamp() >= since - 1
    ]


def _start_prefect(work: Path, postgres: PostgresCluster, cleanup: ExitStack) -> str:
    database = postgres.create_database("prefect")
    port = free_port()
    env = {
        "PREFECT_HOME": str(work / "prefect-server"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_API_DATABASE_CONNECTION_URL": database.replace("+psycopg", "+asyncpg"),
    }
    prefect = str(Path(sys.executable).with_name("prefect"))
    proc = start_process(
        "prefect-server",
        [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        log_path=work / "logs" / "prefect-server.log",
        env=env,
    )
    cleanup.callback(proc.stop)
    url = f"http://127.0.0.1:{port}/api"
    wait_for_http(f"{url}/health", timeout=180)
    return url


def _standin_image(docker: DockerStack) -> tuple[Recipe, BuiltImage]:
    """hf-serve's image as builders/recipes/offline.py builds it (the Debian base, the entrypoint's locked venv,
    the shared entrypoint) with the stand-in server as the server the entrypoint execs."""
    from builders.images import build_image
    from builders.locks import read_lock
    from builders.recipes.base import recipe_for
    from builders.recipes.offline import (
        ENTRYPOINT,
        ENTRYPOINT_LOCK_NAME,
        LOCAL_BASE_IMAGE,
        RUNTIME_REQUIREMENTS_FILE,
        build_files,
    )
    from registry.runtimes.hf_serve import RUNTIME
    from registry.runtimes.interface import ServerCommand

    server = ServerCommand(argv=("python3", STANDIN_IN_IMAGE), model_arg="--model-dir", served_name_arg="--served-name")
    runtime = RUNTIME.model_copy(update={"server": server})
    files = build_files(
        runtime,
        read_lock(ENTRYPOINT_LOCK_NAME),
        extra_files={STANDIN.name: (STANDIN.read_text(encoding="utf-8"), STANDIN_IN_IMAGE)},
    )
    files[RUNTIME_REQUIREMENTS_FILE] = "# the stand-in server needs nothing but the standard library\n"
    recipe = recipe_for(runtime, base_image=LOCAL_BASE_IMAGE, build_files=files, entrypoint=ENTRYPOINT)
    built = build_image(recipe, docker_host=docker.docker_host, registry=docker.registry)
    return recipe, built


def _hub(work: Path, models: int, latency_s: float, cleanup: ExitStack) -> HubServer:
    samples = build_samples(work / "store", include_real=False)
    store = samples.store()
    names = [f"bench-fleet/model-{n:03d}" for n in range(models)]
    keep_only(store, [SOURCE])
    clone_repo(store, SOURCE, names)
    store.delete_repo(SOURCE)
    hub = HubServer(store).start()
    cleanup.callback(hub.stop)
    hub.faults.add(".*", status=None, delay=latency_s, times=None, message="latency")
    return hub


def start_stack(work: Path, *, models: int, latency_s: float, cleanup: ExitStack) -> BenchStack:
    """Start everything; `cleanup` stops it (by pid) when it closes."""
    os.environ["PREFECT_HOME"] = str(work / "prefect-client")
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    # a directory of its own: the server runs as `nobody` when we are root, and `work` is private to us
    postgres = start_postgres(Path(tempfile.mkdtemp(prefix="bench-scale-pg-")), max_connections=200)
    cleanup.callback(postgres.stop)
    os.environ["PREFECT_API_URL"] = _start_prefect(work, postgres, cleanup)
    azurite = start_azurite(work / "azurite", REGIONS)
    cleanup.callback(stop_azurite, work / "azurite")
    for key, value in azurite.env().items():
        os.environ[key] = value
    docker = start_docker(work / "docker", data_root=REPO_ROOT / ".cache" / "docker-bench")
    cleanup.callback(stop_docker, work / "docker")
    ensure_base_image(docker.docker_host)
    os.environ["DOCKER_HOST"] = docker.docker_host
    hub = _hub(work, models, latency_s, cleanup)
    recipe, built = _standin_image(docker)
    stack = BenchStack(work, postgres, os.environ["PREFECT_API_URL"], azurite, docker, hub, built, recipe)
    stack.serve_standin_as_hf_serve()
    return stack
