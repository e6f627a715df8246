"""Launch a runtime as a local process: `transformers serve` (the hf-serve runtime) on CPU, for the tests and
the benchmarks (the pipeline itself runs runtimes as signed images: validators/containers.py).

The server starts with no model argument over a private HF cache that holds the model repos copied from local
directories (`populate_hf_cache`), with `HF_HUB_OFFLINE=1`: it can never reach a hub, and it serves each repo
under
its repo id. The process runs in its own session; `stop()` signals its whole process group by pid.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from devstack.process import ProcessError, pid_alive, start_process, stop_pid
from registry.net import LOOPBACK
from registry.runtimes import get_runtime
from registry.tools import find_tool


class RuntimeLaunchError(ProcessError):
    """A runtime process could not be started or did not become healthy; the message points at its log."""


_LOCAL_REVISION = "0" * 40


def populate_hf_cache(hub_cache: Path, repo_id: str, source: Path, revision: str = _LOCAL_REVISION) -> Path:
    """Copy the files of `source` into the huggingface_hub cache layout under `hub_cache` (…/hub)."""
    if not source.is_dir():
        raise RuntimeLaunchError(f"model directory {source} does not exist; build or stage the model first")
    repo_dir = hub_cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / revision
    snapshot.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        relative = path.relative_to(source)
        if any(part.startswith(".") for part in relative.parts):
            continue
        destination = snapshot / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        if not destination.exists():
            try:
                os.link(path, destination)
            except OSError:
                shutil.copy2(path, destination)
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(revision)
    return snapshot


@dataclass(frozen=True)
class RuntimeProcess:
    """A runtime started by this module: stop it with `stop()`."""

    name: str
    pid: int
    port: int
    log_path: Path
    host: str = LOOPBACK

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def alive(self) -> bool:
        return pid_alive(self.pid)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the process group, SIGKILL it after `timeout` seconds."""
        stop_pid(self.pid, timeout=timeout)


def _transformers_cli() -> list[str]:
    found = find_tool("transformers")
    if found is None:
        raise RuntimeLaunchError("the `transformers` CLI is not installed: pip install 'transformers[serving]'")
    return [found]


def wait_healthy(process: RuntimeProcess, *, path: str = "/health", timeout: float = 120.0) -> None:
    """Poll the health endpoint until it answers 200; raise with the log tail if the process dies or times
    out."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if not process.alive():
            raise RuntimeLaunchError(
                f"{process.name} exited during start-up; log {process.log_path}:\n{process.log_tail()}"
            )
        try:
            response = httpx.get(process.root_url + path, timeout=2.0)
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        time.sleep(0.25)
    process.stop()
    raise RuntimeLaunchError(
        f"{process.name} not healthy on {process.root_url}{path} within {timeout:.0f}s ({last}); "
        f"log {process.log_path}:\n{process.log_tail()}"
    )


def start_hf_serve(
    models: Mapping[str, Path],
    *,
    port: int,
    workdir: Path,
    continuous_batching: bool = False,
    extra_args: Sequence[str] = (),
    timeout: float = 120.0,
) -> RuntimeProcess:
    """Start `transformers serve --device cpu` on 127.0.0.1:`port` serving each repo id of `models`."""
    hf_home = workdir / "hf"
    for repo_id, source in models.items():
        populate_hf_cache(hf_home / "hub", repo_id, source)
    runtime = get_runtime("hf-serve")  # its server command and flags, as the image runs it (registry/runtimes/)
    argv = [
        *_transformers_cli(),
        *runtime.server.argv[1:],
        *runtime.launch((), port=port, host=LOOPBACK).argv,
        "--model-timeout",
        "86400",
        "--log-level",
        "warning",
    ]
    if continuous_batching:
        argv.append("--continuous-batching")
    argv.extend(extra_args)
    env = {
        **os.environ,
        "HF_HOME": str(hf_home),
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    env.pop("HF_ENDPOINT", None)
    log_path = workdir / "hf-serve.log"
    try:
        started = start_process("transformers serve", argv, log_path=log_path, env=env, inherit_env=False)
    except ProcessError as exc:
        raise RuntimeLaunchError(str(exc)) from exc
    process = RuntimeProcess(name="transformers serve", pid=started.pid, port=port, log_path=log_path)
    wait_healthy(process, path=runtime.health_path, timeout=timeout)
    return process


def warm_up(process: RuntimeProcess, model: str, *, timeout: float = 180.0) -> None:
    """Load `model` and run one short generation so later requests measure serving, not loading."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 2,
        "temperature": 0,
    }
    try:
        response = httpx.post(process.base_url + "/chat/completions", json=body, timeout=timeout)
    except httpx.HTTPError as exc:
        raise RuntimeLaunchError(
            f"warm-up of {model} failed ({type(exc).__name__}); log:\n{process.log_tail()}"
        ) from exc
    if response.status_code != 200:
        raise RuntimeLaunchError(
            f"warm-up of {model} answered HTTP {response.status_code}: {response.text[:300]};"
            f" log:\n{process.log_tail()}"
        )
