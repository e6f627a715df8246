"""SIGTERM and Ctrl-C stop a `curate` command within seconds and leave no process behind (the real CLI, in a
process of its own, against the Hub test server on loopback)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from devstack.hub_server import HubServer
from devstack.repostore import RepoStore
from tests.fixtures.hub import build_repo

# A liveness bound, not a measurement: without the fix these commands took minutes to stop. A stop takes a few
# seconds on an idle machine; one full CI run on the shared 2-core machine went past 20 s, so the bound is generous.
STOP_WITHIN_S = 60.0


@pytest.fixture(scope="module")
def prefect_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One Prefect home for the module: its database is created (and migrated) once."""
    return tmp_path_factory.mktemp("prefect-home")


def _curate(args: list[str], tmp_path: Path, prefect_home: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "HF_ENDPOINT"))}
    env.update(PREFECT_HOME=str(prefect_home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    command = [sys.executable, "-c", "from flows.cli import app; app()", "--data-dir", str(tmp_path / "data"), *args]
    return subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _stop(process: subprocess.Popen[str], signum: int, *, group: bool) -> tuple[int, str]:
    if group:
        os.killpg(process.pid, signum)  # what a terminal's Ctrl-C and `timeout` do
    else:
        process.send_signal(signum)
    try:
        _, stderr = process.communicate(timeout=STOP_WITHIN_S)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    return process.returncode, stderr


@pytest.fixture
def slow_hub(hub_store: RepoStore, hub_factory: Callable[..., HubServer]) -> HubServer:
    build_repo(hub_store, "org/listed", meta={"trending_score": 10.0})
    hub = hub_factory(hub_store)
    hub.faults.add(r"^/api/models/org/slow", status=None, delay=600, times=None)  # hangs inside the flow run
    return hub


@pytest.mark.integration
@pytest.mark.parametrize(("signum", "group"), [(signal.SIGTERM, True), (signal.SIGINT, False)])
def test_a_signal_during_a_flow_run_stops_it_and_its_temporary_prefect_server(
    slow_hub: HubServer, tmp_path: Path, prefect_home: Path, signum: int, group: bool
) -> None:
    args = ["--endpoint", slow_hub.url, "discover", "--limit", "1", "--request", "org/slow"]
    process = _curate(args, tmp_path, prefect_home)
    cli = psutil.Process(process.pid)
    _wait_for(lambda: any(f.hits for f in slow_hub.faults.list()), "the flow run to reach the slow Hub call")
    children = cli.children(recursive=True)
    assert any("flows.prefect_server_process" in " ".join(c.cmdline()) for c in children)
    code, stderr = _stop(process, signum, group=group)
    assert code == 128 + signum
    assert stderr.strip().splitlines()[-1] in ("error: stopped by SIGTERM", "error: interrupted (Ctrl-C)")
    assert "Traceback" not in stderr
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == [], f"left behind: {[c.cmdline() for c in alive]}"


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A port that accepts connections and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


@pytest.mark.integration
def test_sigterm_while_waiting_for_a_silent_hub(black_hole: str, tmp_path: Path, prefect_home: Path) -> None:
    process = _curate(["--endpoint", black_hole, "screen", "org/name"], tmp_path, prefect_home)
    time.sleep(3)  # the CLI is up and waiting on the Hub's answer (hub.timeout_s is 30 s)
    code, stderr = _stop(process, signal.SIGTERM, group=False)
    assert code == 128 + signal.SIGTERM
    assert stderr.strip().splitlines()[-1] == "error: stopped by SIGTERM"
