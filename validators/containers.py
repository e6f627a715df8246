"""Run a runtime image for one validation cell through the Docker Engine API (`docker` SDK).

The container uses the host network (the runtime listens on a free loopback port chosen by the caller),
gets GPUs through device requests when the accelerator vendor is `nvidia` (`/dev/kfd` + `/dev/dri` for `amd`),
and is waited on until its health probe answers 200 or a deadline passes. On failure the message carries the
tail of the container's log. The container is always stopped and removed when the context exits.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import docker
import httpx
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container
from docker.types import DeviceRequest

from registry.credentials import RegistryAuthError, registry_credentials, registry_host
from validators.errors import RuntimeLaunchError

LABEL_CELL = "io.curation.cell"
LOG_TAIL_CHARS = 4000


@dataclass(frozen=True)
class ContainerSpec:
    """What to run: the image (pinned by digest), its arguments and environment, where it answers."""

    image: str
    command: tuple[str, ...]
    port: int
    health_path: str = "/health"
    environment: Mapping[str, str] = field(default_factory=dict)
    vendor: str = "cpu"
    gpu_count: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass(frozen=True)
class RunningContainer:
    id: str
    base_url: str
    started_s: float
    ready_s: float


def docker_client(docker_host: str | None = None) -> docker.DockerClient:
    """A client for `docker_host`, else DOCKER_HOST; raises RuntimeLaunchError when neither reaches an engine."""
    host = docker_host or os.environ.get("DOCKER_HOST")
    if not host:
        raise RuntimeLaunchError("no Docker Engine: set DOCKER_HOST (locally `eval $(curate dev env)`)")
    try:
        client = docker.DockerClient(base_url=host, timeout=300)
        client.ping()
    except DockerException as exc:
        raise RuntimeLaunchError(f"cannot reach the Docker Engine at {host}: {exc}") from exc
    return client


def _device_options(spec: ContainerSpec) -> dict[str, object]:
    if spec.vendor == "nvidia":
        count = spec.gpu_count if spec.gpu_count > 0 else -1
        return {"device_requests": [DeviceRequest(count=count, capabilities=[["gpu"]])]}
    if spec.vendor == "amd":
        return {"devices": ["/dev/kfd:/dev/kfd:rwm", "/dev/dri:/dev/dri:rwm"], "group_add": ["video"]}
    return {}


def logs_tail(container: Container, limit: int = LOG_TAIL_CHARS) -> str:
    try:
        raw: bytes = container.logs()
    except (APIError, NotFound):
        return "(no log: the container is gone)"
    text = raw.decode(errors="replace")
    return text[-limit:]


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def wait_healthy(container: Container, spec: ContainerSpec, timeout_s: float, poll_s: float = 0.5) -> float:
    """Seconds until the health probe answered 200; raises RuntimeLaunchError (with the log) otherwise."""
    started = time.monotonic()
    url = spec.base_url + spec.health_path
    while time.monotonic() - started < timeout_s:
        if _healthy(url):
            return time.monotonic() - started
        container.reload()
        if container.status in ("exited", "dead"):
            code = container.attrs.get("State", {}).get("ExitCode")
            raise RuntimeLaunchError(
                f"{spec.image} exited with code {code} before {spec.health_path} answered; its log ends:\n"
                + logs_tail(container)
            )
        time.sleep(poll_s)
    raise RuntimeLaunchError(
        f"{spec.image} did not answer {url} within {timeout_s:.0f}s; raise validation.health_timeout_s if the "
        "model is large. Its log ends:\n" + logs_tail(container)
    )


def _remove(container: Container) -> None:
    with contextlib.suppress(APIError, NotFound):  # already stopped or gone: removal below settles it
        container.stop(timeout=10)
    try:
        container.remove(force=True)
    except NotFound:
        return
    except APIError as exc:
        raise RuntimeLaunchError(f"cannot remove container {container.short_id}: {exc}") from exc


def ensure_image(client: docker.DockerClient, image: str) -> None:
    """Pull `image` with the registry's credentials (settings or Docker config) unless the engine has it.

    The engine would pull a missing image anonymously on `run`; a registry that needs a login refuses that.
    """
    try:
        client.images.get(image)
        return
    except ImageNotFound:
        pass
    try:
        credentials = registry_credentials(registry_host(image))
    except RegistryAuthError as exc:
        raise RuntimeLaunchError(str(exc)) from exc
    login = credentials.docker_auth_config() if credentials is not None else None
    hint = credentials.remedy() if credentials is not None else "log in to the registry if it needs credentials"
    repository, _, digest = image.partition("@")
    try:
        stream = client.api.pull(repository, tag=digest or None, stream=True, decode=True, auth_config=login)
        errors = [str(chunk["error"]) for chunk in stream if "error" in chunk]
    except (ImageNotFound, NotFound) as exc:
        raise RuntimeLaunchError(f"image {image} is not in the registry: {exc}") from exc
    except APIError as exc:
        raise RuntimeLaunchError(f"pulling {image} failed: {exc.explanation or exc}; {hint}") from exc
    if errors:
        raise RuntimeLaunchError(f"pulling {image} failed: {errors[-1]}; {hint}")


@contextmanager
def run_container(
    spec: ContainerSpec, *, health_timeout_s: float, docker_host: str | None = None
) -> Iterator[RunningContainer]:
    """Start the container, wait for its health probe, yield it; stop and remove it on exit (always)."""
    client = docker_client(docker_host)
    try:
        t0 = time.monotonic()
        ensure_image(client, spec.image)
        try:
            container = client.containers.run(
                spec.image,
                command=list(spec.command),
                environment=dict(spec.environment),
                network_mode="host",
                labels=dict(spec.labels),
                detach=True,
                **_device_options(spec),
            )
        except ImageNotFound as exc:
            raise RuntimeLaunchError(f"image {spec.image} is not in the registry or the engine: {exc}") from exc
        except APIError as exc:
            raise RuntimeLaunchError(f"the Docker Engine refused to start {spec.image}: {exc}") from exc
        try:
            ready = wait_healthy(container, spec, health_timeout_s)
            yield RunningContainer(container.id or "", spec.base_url, time.monotonic() - t0, ready)
        finally:
            _remove(container)
    finally:
        client.close()


def cell_containers(labels: Mapping[str, str], docker_host: str | None = None) -> list[str]:
    """Ids of containers (running or not) carrying all of `labels` (used to check nothing was left behind)."""
    client = docker_client(docker_host)
    try:
        filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
        return [c.id or "" for c in client.containers.list(all=True, filters=filters)]
    finally:
        client.close()
