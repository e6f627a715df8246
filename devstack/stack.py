"""`curate dev up|down`: start and stop the local stack on 127.0.0.1, one service at a time, tracked by pid.

Services (in start order): the Hub test server with the sample repos, the Prefect server (UI), and the services
later stages add (Azurite regions, dockerd + registry). Each records its pids, URL and the environment its
clients need in `<data_dir>/devstack/state.json`; `curate` reads that file so commands run after `dev up` use
the local stack without any exported variable.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from devstack.net import free_port, port_open, wait_for_http
from devstack.process import ProcessError, start_process, stop_pid
from devstack.state import (
    ServiceState,
    StackState,
    load_state,
    save_state,
    state_dir,
    with_service,
    without_service,
)

HUB_PORT = 8990
PREFECT_PORT = 4200
DEV_HUB_TOKEN = "hf_dev_local_token"  # noqa: S105 (a well-known token of the local test server, not a secret)


@dataclass(frozen=True)
class StackContext:
    data_dir: Path
    regions: dict[str, str] = field(default_factory=dict)  # region -> storage account name
    pools: tuple[str, ...] = ()  # Prefect work pools of the accelerator families
    curation_pool: str = "curation"  # the pool of the per-model flow runs (orchestration.pool)
    workers: int = 1  # local workers of the curation pool (`curate dev up --workers N`)
    registry_auth: bool = False  # the image registry needs a login (htpasswd); clients get it from `dev env`
    progress: Callable[[str], None] = lambda message: None

    @property
    def root(self) -> Path:
        return state_dir(self.data_dir)


Starter = Callable[[StackContext], ServiceState]
Stopper = Callable[[StackContext, ServiceState], None]


def _port(preferred: int) -> int:
    return preferred if not port_open(preferred) else free_port()


def _stop_pids(_: StackContext, service: ServiceState) -> None:
    for pid in reversed(service.pids):
        stop_pid(pid)


def start_hub(ctx: StackContext) -> ServiceState:
    from devstack.samples import build_samples

    ctx.progress("building the sample repositories (cached after the first time)")
    store_root = ctx.root / "hub-repos"
    samples = build_samples(store_root)
    port = _port(HUB_PORT)
    ctx.progress(f"starting the Hub test server on 127.0.0.1:{port}")
    proc = start_process(
        "hub",
        [
            sys.executable,
            "-m",
            "devstack.hub_server",
            "--root",
            str(store_root),
            "--port",
            str(port),
            "--token",
            DEV_HUB_TOKEN,
        ],
        log_path=ctx.root / "logs" / "hub.log",
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/api/models?limit=1", timeout=60)
    except TimeoutError as exc:
        proc.stop()
        raise ProcessError(f"the Hub test server did not start: {exc}; see {proc.log_path}") from exc
    return ServiceState(
        name="hub",
        pids=(proc.pid,),
        url=url,
        env={"HF_ENDPOINT": url},
        details={"repos": len(samples.samples), "store": str(store_root), "dev_token": DEV_HUB_TOKEN},
    )


def start_prefect(ctx: StackContext) -> ServiceState:
    port = _port(PREFECT_PORT)
    ctx.progress(f"starting the Prefect server (UI) on 127.0.0.1:{port}")
    prefect = Path(sys.executable).with_name("prefect")
    env = {
        "PREFECT_HOME": str(ctx.root / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_API_URL": f"http://127.0.0.1:{port}/api",
    }
    proc = start_process(
        "prefect",
        [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        log_path=ctx.root / "logs" / "prefect.log",
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/api/health", timeout=120)
    except TimeoutError as exc:
        proc.stop()
        raise ProcessError(f"the Prefect server did not start: {exc}; see {proc.log_path}") from exc
    return ServiceState(name="prefect", pids=(proc.pid,), url=url, env={"PREFECT_API_URL": f"{url}/api"})


def start_azurite(ctx: StackContext) -> ServiceState:
    from devstack.azurite import azurite_service

    return azurite_service(ctx.root, ctx.regions, ctx.progress)


def stop_azurite(ctx: StackContext, _: ServiceState) -> None:
    from devstack.azurite import stop_azurite as stop

    stop(ctx.root / "azurite")


def start_docker(ctx: StackContext) -> ServiceState:
    """dockerd (private socket, overlay2, no iptables) + a CNCF registry, unless the user gave DOCKER_HOST."""
    from devstack.docker_engine import start_dev_images

    if os.environ.get("DOCKER_HOST"):
        ctx.progress(f"using the Docker Engine at DOCKER_HOST={os.environ['DOCKER_HOST']}")
        return ServiceState(name="docker", details={"external": True})
    login = " (with a login)" if ctx.registry_auth else ""
    ctx.progress(f"starting dockerd and the image registry{login} (first time: builds the base image, ~1 min)")
    stack, env = start_dev_images(ctx.root / "docker", registry_auth=ctx.registry_auth)
    return ServiceState(
        name="docker",
        pids=(stack.dockerd_pid, stack.registry_pid),
        url=stack.docker_host,
        env=env,
        details=stack.to_json(),
    )


def stop_docker(ctx: StackContext, service: ServiceState) -> None:
    from devstack.docker_engine import stop_docker as stop

    if not service.details.get("external"):
        stop(ctx.root / "docker")


# How long the run's worker census waits for a pool with no worker on the local stack, where GPU pools have none:
# not at all (their cells end "no worker online" at once).
LOCAL_CAPACITY_DEADLINE_S = "0"
REPO_ROOT = Path(__file__).resolve().parent.parent


def _prefect_cli(ctx: StackContext, args: list[str], env: dict[str, str]) -> None:
    prefect = Path(sys.executable).with_name("prefect")
    log = ctx.root / "logs" / "workers.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as handle:
        done = subprocess.run(
            [str(prefect), "--no-prompt", *args],
            cwd=REPO_ROOT,
            env={**os.environ, **env},
            stdout=handle,
            stderr=subprocess.STDOUT,
            check=False,
            timeout=300,
        )
    if done.returncode != 0:
        raise ProcessError(f"`prefect {' '.join(args)}` failed (exit {done.returncode}); see {log}")


def _start_worker(ctx: StackContext, pool: str, name: str, env: dict[str, str]) -> int:
    prefect = str(Path(sys.executable).with_name("prefect"))
    worker = start_process(
        name,
        [prefect, "worker", "start", "--pool", pool, "--type", "process", "--name", name],
        log_path=ctx.root / "logs" / f"{name}.log",
        env=env,
        cwd=REPO_ROOT,
    )
    return worker.pid


def start_workers(ctx: StackContext) -> ServiceState:
    """The local work pools (one per accelerator family, and the `curation` pool of the per-model runs), the
    prefect.yaml deployments, a `cpu` worker for validation cells and `ctx.workers` workers of the curation pool.

    The workers inherit the stack's client variables (Hub, Prefect API, Azurite regions, Docker), so the model
    runs and validation cells they take run against the local stack. GPU pools get no worker here: the run's
    census finds none and their cells end "no worker online" at once.
    """
    state = load_state(ctx.data_dir)
    env = {
        **state.env(),
        "CURATION_HOME": str(REPO_ROOT),
        "CURATE_DATA_DIR": str(ctx.data_dir),
        "CURATE_VALIDATION__CAPACITY_DEADLINE_S": LOCAL_CAPACITY_DEADLINE_S,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    if "PREFECT_API_URL" not in env:
        raise ProcessError("the Prefect server is not running; start it first (`curate dev up --only prefect`)")
    pools = tuple(dict.fromkeys((*(ctx.pools or ("cpu",)), ctx.curation_pool)))
    ctx.progress(f"creating work pools {', '.join(pools)} and deploying prefect.yaml")
    for pool in pools:
        _prefect_cli(ctx, ["work-pool", "create", pool, "--type", "process", "--overwrite"], env)
    _prefect_cli(ctx, ["deploy", "--all"], env)
    ctx.progress(f"starting a worker for the cpu pool and {ctx.workers} for the {ctx.curation_pool} pool")
    pids = [_start_worker(ctx, "cpu", "worker-cpu", env)]
    pids += [_start_worker(ctx, ctx.curation_pool, f"worker-curation-{n}", env) for n in range(1, ctx.workers + 1)]
    return ServiceState(
        name="workers",
        pids=tuple(pids),
        env={"CURATE_VALIDATION__CAPACITY_DEADLINE_S": LOCAL_CAPACITY_DEADLINE_S},
        details={"pools": list(pools), "worker_pools": ["cpu", ctx.curation_pool], "curation_workers": ctx.workers},
    )


SERVICES: dict[str, tuple[Starter, Stopper]] = {
    "hub": (start_hub, _stop_pids),
    "prefect": (start_prefect, _stop_pids),
    "azurite": (start_azurite, stop_azurite),
    "docker": (start_docker, stop_docker),
    "workers": (start_workers, _stop_pids),
}


def _refuse_login_change(ctx: StackContext, name: str, existing: ServiceState | None) -> None:
    """`--registry-auth` asked of a stack whose registry runs without a login: say how to restart it."""
    running = existing is not None and existing.alive() and name == "docker"
    if running and ctx.registry_auth and existing is not None and existing.details.get("registry_auth") != "htpasswd":
        raise ProcessError(
            "the image registry is running without a login: `curate dev down`, then `curate dev up --registry-auth`"
        )


def up(ctx: StackContext, only: tuple[str, ...] = ()) -> StackState:
    """Start every service not already running; return the stack's state."""
    state = load_state(ctx.data_dir)
    for name, (start, _) in SERVICES.items():
        if only and name not in only:
            continue
        existing = state.services.get(name)
        _refuse_login_change(ctx, name, existing)
        if existing is not None and (existing.alive() or existing.details.get("external")):
            ctx.progress(f"{name} already running ({existing.url or 'pid ' + str(existing.pids[0])})")
            continue
        service = start(ctx)
        state = with_service(state, service)
        save_state(ctx.data_dir, state)
    return state


def down(ctx: StackContext) -> StackState:
    """Stop every recorded service by pid, newest first."""
    state = load_state(ctx.data_dir)
    for name in reversed(list(state.services)):
        service = state.services[name]
        stopper = SERVICES.get(name, (None, _stop_pids))[1]
        ctx.progress(f"stopping {name}")
        try:
            stopper(ctx, service)
        except (ProcessError, OSError) as exc:
            # Keep going: one service that will not stop must not leave the others running.
            ctx.progress(f"could not stop {name} cleanly ({exc}); stopping its pids")
            _stop_pids(ctx, service)
        state = without_service(state, name)
        save_state(ctx.data_dir, state)
    return state


def apply_stack_env(data_dir: Path) -> dict[str, str]:
    """Export the running local stack's client variables, without overriding what the user set."""
    applied: dict[str, str] = {}
    for key, value in load_state(data_dir).env().items():
        if key not in os.environ:
            os.environ[key] = value
            applied[key] = value
    return applied
