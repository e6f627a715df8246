"""The services a command needs, checked before it starts work that would fail slowly without them.

A flow run costs seconds before its first task (importing Prefect, maybe starting a temporary API server); a
command that needs the Hub or the Docker Engine first asks them, so that an unreachable one is one line within
seconds (exit 4) rather than a failed flow run. `prefect_api()` gives the command's flow runs their API: the
configured one when PREFECT_API_URL is set (checked first), else a temporary server this process owns
(flows/cli/prefect_server.py), stopped when the command ends however it ends.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import httpx

from flows.cli.context import settings
from flows.cli.exit_codes import CliError, ExitCode
from registry.settings import Settings

_CHECK_TIMEOUT_S = 5.0
_SERVER_START_TIMEOUT_S = 90.0


def check_hub(current: Settings) -> None:
    """The Hub answers a one-model listing (under the Hub policy's retries and deadline), else its typed error."""
    from registry.hub import hub_source

    source = hub_source(current.hub)
    try:
        source.check_reachable()
    finally:
        source.close()


def check_docker() -> str:
    """DOCKER_HOST, after the Docker Engine there answered a ping."""
    import docker
    from docker.errors import DockerException

    host = os.environ.get("DOCKER_HOST")
    if not host:
        raise CliError(
            "no Docker Engine: DOCKER_HOST is not set; run `curate dev up` (or point DOCKER_HOST at an engine)",
            ExitCode.UNREACHABLE,
        )
    try:
        client = docker.DockerClient(base_url=host, timeout=int(_CHECK_TIMEOUT_S))
        try:
            client.ping()
        finally:
            client.close()
    except DockerException as exc:
        raise CliError(
            f"the Docker Engine at {host} does not answer; start it (`curate dev up`) or fix DOCKER_HOST",
            ExitCode.UNREACHABLE,
        ) from exc
    return host


def check_registry(current: Settings) -> None:
    """The image registry of `images.registry` answers and takes our credentials (else the OCI client's errors)."""
    from registry.oci import OciClient

    with OciClient.for_registry(current.images.registry, current.images, timeout=_CHECK_TIMEOUT_S) as oci:
        oci.ping()


@contextlib.contextmanager
def prefect_api() -> Iterator[str]:
    """The Prefect API URL this command's flow runs report to, for the duration of the block."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    configured = PREFECT_API_URL.value()
    if configured:
        _check_prefect(configured)
        yield configured
        return
    from flows.cli.prefect_server import TemporaryPrefectServer

    server = TemporaryPrefectServer(settings().data_dir.resolve() / "logs" / "prefect-server.log")
    try:
        server.start(_SERVER_START_TIMEOUT_S)
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            yield server.api_url
    finally:
        server.stop()


def _check_prefect(url: str) -> None:
    try:
        response = httpx.get(f"{url.rstrip('/')}/health", timeout=_CHECK_TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise CliError(
            f"the Prefect API at {url} does not answer ({type(exc).__name__}); start it (`curate dev up`), or "
            "unset PREFECT_API_URL to run with a temporary one",
            ExitCode.UNREACHABLE,
        ) from exc
    if response.status_code == 404:  # any other answer is a server (one that needs a key answers 401)
        raise CliError(f"{url} is not a Prefect API (GET /health: 404); check PREFECT_API_URL", ExitCode.INCOMPATIBLE)
