"""Build, tag and push runtime images through the Docker Engine API (`docker` SDK), cached by recipe digest.

Tags are reproducible: `<registry>/<runtime>:<version>-<recipe digest, 12 hex>`, where the digest covers the
recipe (Dockerfile, files, requirements) and the exact wheel set. A recipe whose tag already exists in the
registry is not rebuilt (and not pushed); one whose image is in the local engine with the same recipe-digest
label is only pushed. Builds run with the classic builder and `network_mode="none"`: everything the image
needs is in the build context (wheels downloaded on the host into a cache, installed with `--no-index`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
from docker.errors import APIError, BuildError, DockerException, ImageNotFound

from builders.errors import ImageBuildError, NotBuildableError
from builders.locks import pins, require_lock
from builders.recipes.base import Recipe
from registry.credentials import RegistryCredentials
from registry.oci import ImageName, OciClient, OciError

LABEL_RUNTIME = "io.curation.runtime"
LABEL_RECIPE = "io.curation.recipe-digest"
DEFAULT_WHEEL_CACHE = Path(__file__).resolve().parent.parent / ".cache" / "wheels"
LOCAL_WHEELS = Path("/opt/wheels")  # where the local CPU torch wheel lives on the dev machines and CI

Log = Callable[[str], None]
_SAVED = re.compile(r"(?:Saved|File was already downloaded) (\S+\.whl)")


@dataclass(frozen=True)
class BuiltImage:
    """One image in the registry: its tag, its manifest digest, and whether this call built or pushed it."""

    runtime: str
    version: str
    reference: str
    digest: str
    recipe_digest: str
    built: bool
    pushed: bool

    @property
    def pinned(self) -> str:
        return ImageName.parse(self.reference).with_digest(self.digest)


def _quiet(_: str) -> None:
    return None


# --------------------------------------------------------------------------------------------- wheels


def ensure_wheels(lock_text: str, cache_dir: Path = DEFAULT_WHEEL_CACHE, log: Log = _quiet) -> list[Path]:
    """The wheel files of a lock (hash-pinned requirements), downloaded once into `cache_dir` with the host's pip.

    pip checks every wheel against the lock's hashes; a list per lock digest names the wheels, and while every
    listed wheel is present pip is not run again.
    """
    key = hashlib.sha256(lock_text.encode()).hexdigest()[:16]
    cache_dir.mkdir(parents=True, exist_ok=True)
    listing = cache_dir / f"lock-{key}.json"
    if listing.is_file():
        names = json.loads(listing.read_text())
        paths = [cache_dir / name for name in names]
        if all(p.is_file() for p in paths):
            return paths
    log(f"downloading the {len(pins(lock_text))} locked wheels into {cache_dir}")
    with tempfile.NamedTemporaryFile("w", suffix=".txt", prefix="lock-", delete=False) as handle:
        handle.write(lock_text)
    command = [sys.executable, "-m", "pip", "download", "--progress-bar", "off", "--dest", str(cache_dir)]
    command += ["--only-binary", ":all:", "--no-deps", "--require-hashes", "--disable-pip-version-check"]
    if LOCAL_WHEELS.is_dir():
        command += ["--find-links", str(LOCAL_WHEELS)]
    try:
        result = subprocess.run([*command, "-r", handle.name], capture_output=True, text=True, check=False)
    finally:
        Path(handle.name).unlink(missing_ok=True)
    if result.returncode != 0:
        raise ImageBuildError(
            f"pip download of the locked wheels failed (exit {result.returncode}); check the index "
            f"and /opt/wheels:\n{result.stderr[-2000:]}"
        )
    names = sorted({Path(match).name for match in _SAVED.findall(result.stdout)})
    missing = [n for n in names if not (cache_dir / n).is_file()]
    if missing:
        raise ImageBuildError(f"pip reported wheels that are not in {cache_dir}: {', '.join(missing[:5])}")
    listing.write_text(json.dumps(names, indent=1))
    return [cache_dir / name for name in names]


# --------------------------------------------------------------------------------------------- identity


def recipe_digest(recipe: Recipe, wheels: Iterable[Path] = ()) -> str:
    """The build cache key: the recipe plus the names and sizes of the wheels it installs."""
    wheel_set = sorted((p.name, p.stat().st_size) for p in wheels)
    return recipe.digest(extra={"wheels": wheel_set})


def image_reference(registry: str, recipe: Recipe, digest: str) -> str:
    return f"{registry}/{recipe.runtime}:{recipe.version}-{digest[:12]}"


def _labels(recipe: Recipe, digest: str, revision: str) -> dict[str, str]:
    return {
        "org.opencontainers.image.source": recipe.source,
        "org.opencontainers.image.revision": revision,
        "org.opencontainers.image.version": recipe.version,
        "org.opencontainers.image.created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "org.opencontainers.image.title": recipe.runtime,
        "org.opencontainers.image.description": recipe.description,
        LABEL_RUNTIME: recipe.runtime,
        LABEL_RECIPE: digest,
    }


def source_revision() -> str:
    """This project's commit (the OCI `revision` label), or "unknown" outside a git checkout."""
    env = os.environ.get("CURATE_SOURCE_REVISION")
    if env:
        return env
    here = Path(__file__).resolve().parent.parent
    try:
        result = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 else "unknown"


# --------------------------------------------------------------------------------------------- build


def _context(recipe: Recipe, wheels: list[Path], target: Path) -> None:
    for name, text in recipe.build_files.items():
        path = target / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    if recipe.requirements:
        (target / "requirements.txt").write_text(recipe.lock)
        wheel_dir = target / "wheels"
        wheel_dir.mkdir()
        for wheel in wheels:
            try:
                os.link(wheel, wheel_dir / wheel.name)
            except OSError:
                shutil.copy2(wheel, wheel_dir / wheel.name)


def _find_local(client: docker.DockerClient, reference: str, digest: str) -> bool:
    """Whether the engine has an image built from this recipe digest; tags it as `reference` if so.

    Found by label, not by tag, so an image built for another registry address is reused too.
    """
    images = client.images.list(filters={"label": f"{LABEL_RECIPE}={digest}"})
    if not images:
        return False
    name = ImageName.parse(reference)
    if reference not in images[0].tags:
        images[0].tag(f"{name.registry}/{name.repository}", tag=name.tag)
    return True


def _run_build(client: docker.DockerClient, context: Path, reference: str, labels: dict[str, str], log: Log) -> None:
    tail: list[str] = []
    try:
        stream = client.api.build(
            path=str(context),
            tag=reference,
            labels=labels,
            network_mode="none",
            rm=True,
            forcerm=True,
            pull=False,
            decode=True,
        )
        for chunk in stream:
            if "error" in chunk:
                raise ImageBuildError(f"building {reference} failed: {chunk['error'].strip()}\n" + "".join(tail[-20:]))
            line = str(chunk.get("stream", ""))
            if line.strip():
                tail.append(line)
                log(line.rstrip())
    except (APIError, BuildError) as exc:
        raise ImageBuildError(f"building {reference} failed: {exc}\n" + "".join(tail[-20:])) from exc


def _push(client: docker.DockerClient, reference: str, log: Log, credentials: RegistryCredentials | None) -> str:
    """Push through the engine, logged in with `credentials` (its auth config) when the registry needs them."""
    name = ImageName.parse(reference)
    repository = f"{name.registry}/{name.repository}"
    login = credentials.docker_auth_config() if credentials is not None else None
    digest: str | None = None
    try:
        for chunk in client.api.push(repository, tag=name.tag, stream=True, decode=True, auth_config=login):
            if "error" in chunk:
                who = credentials.describe() if credentials is not None else "anonymous access"
                raise ImageBuildError(
                    f"pushing {reference} failed: {chunk['error']}; is the registry running, and does it accept {who}?"
                )
            aux = chunk.get("aux") or {}
            if aux.get("Digest"):
                digest = str(aux["Digest"])
            status = chunk.get("status")
            if status and not chunk.get("progressDetail"):
                log(f"push: {status}")
    except APIError as exc:
        raise ImageBuildError(f"pushing {reference} failed: {exc}") from exc
    if digest is None:
        raise ImageBuildError(f"pushing {reference} reported no digest; check the registry log")
    return digest


def build_image(
    recipe: Recipe,
    *,
    docker_host: str,
    registry: str,
    wheel_cache: Path = DEFAULT_WHEEL_CACHE,
    revision: str | None = None,
    force: bool = False,
    log: Log = _quiet,
) -> BuiltImage:
    """Build (unless cached), push (unless already there) and return the image's registry digest."""
    if not recipe.buildable:
        raise NotBuildableError(
            f"runtime {recipe.runtime} uses the upstream images {sorted(recipe.upstream_images.values())}; "
            "only recipes with build files are built here"
        )
    lock = require_lock(recipe.runtime, recipe.lock) if recipe.requirements else ""
    wheels = ensure_wheels(lock, wheel_cache, log) if lock else []
    digest = recipe_digest(recipe, wheels)
    reference = image_reference(registry, recipe, digest)
    name = ImageName.parse(reference)
    try:
        with OciClient.for_registry(registry) as oci:
            credentials = oci.credentials
            existing = None if force else oci.manifest_digest(name.repository, name.ref)
    except OciError as exc:
        raise ImageBuildError(str(exc)) from exc
    if existing is not None:
        log(f"{reference} is already in the registry ({existing}); not rebuilt")
        return BuiltImage(recipe.runtime, recipe.version, reference, existing, digest, built=False, pushed=False)
    try:
        client = docker.DockerClient(base_url=docker_host, timeout=1800)
    except DockerException as exc:
        raise ImageBuildError(f"cannot reach the Docker Engine at {docker_host}: {exc}; run `curate dev up`") from exc
    try:
        built = False
        if force or not _find_local(client, reference, digest):
            if recipe.base_image is not None:
                try:
                    client.images.get(recipe.base_image)
                except ImageNotFound as exc:
                    raise ImageBuildError(
                        f"base image {recipe.base_image} is not in the engine; `curate dev up` imports it "
                        "(devstack.docker_engine.ensure_base_image)"
                    ) from exc
            with tempfile.TemporaryDirectory(prefix=f"ctx-{recipe.runtime}-", dir=wheel_cache.parent) as tmp:
                _context(recipe, wheels, Path(tmp))
                _run_build(client, Path(tmp), reference, _labels(recipe, digest, revision or source_revision()), log)
            built = True
        pushed_digest = _push(client, reference, log, credentials)
    finally:
        client.close()
    return BuiltImage(recipe.runtime, recipe.version, reference, pushed_digest, digest, built=built, pushed=True)


def image_labels(docker_host: str, reference: str) -> dict[str, Any]:
    """The labels of a local image (for `curate images list` and the tests)."""
    client = docker.DockerClient(base_url=docker_host, timeout=60)
    try:
        image = client.images.get(reference)
        return dict((image.attrs.get("Config") or {}).get("Labels") or {})
    except ImageNotFound as exc:
        raise ImageBuildError(f"{reference} is not in the local engine") from exc
    finally:
        client.close()
