"""Build, tag and push runtime images through the Docker Engine API (`docker` SDK), cached by recipe digest.

Tags are reproducible: `<registry>/<runtime>:<version>-<recipe digest, 12 hex>`, where the digest covers the
recipe (Dockerfile, files, the hash-pinned locks) and the sha256 of any wheel compiled here. A recipe whose tag
already exists in the registry is not rebuilt (and not pushed; its wheels are not even fetched); one whose image
is in the local engine with the same recipe-digest label is only pushed.

Builds use the classic builder. The locked wheels are downloaded on the host once (`ensure_wheels`, hash-checked
by pip) and served to the build on a loopback port (`builders/wheel_server.py`); the build runs on the host
network only to reach it, and pip installs with `--no-index --require-hashes`, so no wheel is in the context or a
layer. A `transient_build` recipe (multi-GB GPU images) fetches its wheels into a folder of its own, deletes
each install layer's wheels once that layer is committed and the rest after the push, and removes the local
image and dangling layers after the push: the registry keeps the only copy.
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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
from docker.errors import APIError, BuildError, DockerException, ImageNotFound

from builders.errors import ImageBuildError, NotBuildableError
from builders.local_wheels import CompiledWheel, ensure_compiled_wheel, extract_sdist_files
from builders.locks import locked_pip_env, pins, require_lock, requirement_block, with_wheel_hash
from builders.recipes.base import Recipe
from builders.recipes.offline import ENTRYPOINT_REQUIREMENTS_FILE, SDIST_FILES_DIR, split_lock
from builders.wheel_server import serve_wheels
from registry.credentials import RegistryAuthError, RegistryCredentials, registry_credentials
from registry.oci import ImageName, OciClient, OciError

LABEL_RUNTIME = "io.curation.runtime"
LABEL_RECIPE = "io.curation.recipe-digest"
LABEL_UPSTREAM = "io.curation.upstream"  # a wrapper's upstream image, `repository@sha256:...` (builders/wrap.py)
DEFAULT_WHEEL_CACHE = Path(__file__).resolve().parent.parent / ".cache" / "wheels"
TRANSIENT_WHEELS = "build-wheels"  # beside the wheel cache: <cache>/../build-wheels/<runtime>/, deleted after a push
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
        result = subprocess.run(
            [*command, "-r", handle.name], capture_output=True, text=True, check=False, env=locked_pip_env()
        )
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


# --------------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class BuildInputs:
    """What a build installs: requirement files by build-context name, and the wheels compiled here."""

    requirements: dict[str, str]
    compiled: dict[str, CompiledWheel]


def _without(lock_text: str, compiled: dict[str, CompiledWheel]) -> str:
    """The lock part less the packages compiled here (their wheels do not come from the index)."""
    for package in compiled:
        lock_text = lock_text.replace(requirement_block(lock_text, package).rstrip("\n"), "")
    return lock_text


def build_inputs(recipe: Recipe, wheel_cache: Path = DEFAULT_WHEEL_CACHE, log: Log = _quiet) -> BuildInputs:
    """The requirement files of a recipe (compiling its source builds first, once per host)."""
    lock = require_lock(recipe.runtime, recipe.lock) if recipe.requirements else ""
    compiled: dict[str, CompiledWheel] = {}
    for build in recipe.source_builds:
        wheel = ensure_compiled_wheel(build, lock, recipe.build_lock, wheel_cache, log)
        compiled[build.package] = wheel
        lock = with_wheel_hash(lock, build.package, wheel.sha256)
    requirements = split_lock(lock, recipe.install_layers) if lock else {}
    entrypoint_lock = recipe.build_files.get(ENTRYPOINT_REQUIREMENTS_FILE)
    if entrypoint_lock is not None:
        requirements[ENTRYPOINT_REQUIREMENTS_FILE] = require_lock("entrypoint", entrypoint_lock)
    return BuildInputs(requirements=requirements, compiled=compiled)


# --------------------------------------------------------------------------------------------- identity


def recipe_digest(recipe: Recipe, inputs: BuildInputs | None = None) -> str:
    """The build cache key: the recipe (its locks included) plus the sha256 of each wheel compiled here."""
    compiled = {package: wheel.sha256 for package, wheel in sorted((inputs.compiled if inputs else {}).items())}
    return recipe.digest(extra={"compiled": compiled} if compiled else None)


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
        **({LABEL_UPSTREAM: recipe.upstream} if recipe.upstream else {}),
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


def _context(recipe: Recipe, inputs: BuildInputs, target: Path) -> None:
    for name, text in {**recipe.build_files, **inputs.requirements}.items():
        path = target / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for build in recipe.source_builds:
        extract_sdist_files(
            inputs.compiled[build.package].sdist, build.sdist_files, target / SDIST_FILES_DIR / build.package
        )


def _find_local(client: docker.DockerClient, reference: str, digest: str) -> bool:
    """Whether the engine has an image built from this recipe digest; tags it as `reference` if so.

    Found by label, not by tag, so an image built for another registry address is reused too. An image built
    FROM it (a patched or test rebuild) inherits the label but always has a longer history: the shortest is ours.
    """
    images = client.images.list(filters={"label": f"{LABEL_RECIPE}={digest}"})
    if not images:
        return False
    ours = min(images, key=lambda image: len(image.history()))
    name = ImageName.parse(reference)
    if reference not in ours.tags:
        ours.tag(f"{name.registry}/{name.repository}", tag=name.tag)
    return True


def _run_build(
    client: docker.DockerClient,
    context: Path,
    reference: str,
    labels: dict[str, str],
    log: Log,
    *,
    wheels_url: str | None = None,
    on_step: Callable[[str], None] | None = None,
) -> None:
    """Build with the classic builder; `on_step(line)` runs as each step starts (the one before is committed)."""
    tail: list[str] = []
    try:
        stream = client.api.build(
            path=str(context),
            tag=reference,
            labels=labels,
            network_mode="host" if wheels_url else "none",
            buildargs={"WHEELS": wheels_url} if wheels_url else None,
            rm=True,
            forcerm=True,
            pull=False,
            decode=True,
        )
        for chunk in stream:
            if "error" in chunk:
                raise ImageBuildError(f"building {reference} failed: {chunk['error'].strip()}\n" + "".join(tail[-20:]))
            line = str(chunk.get("stream", ""))
            if line.startswith("Step ") and on_step is not None:
                on_step(line)
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
        raise NotBuildableError(f"recipe {recipe.runtime} has no build files; only those are built here")
    inputs = build_inputs(recipe, wheel_cache, log)
    digest = recipe_digest(recipe, inputs)
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
        client = docker.DockerClient(base_url=docker_host, timeout=3600)
    except DockerException as exc:
        raise ImageBuildError(f"cannot reach the Docker Engine at {docker_host}: {exc}; run `curate dev up`") from exc
    wheel_dir = wheel_cache.parent / TRANSIENT_WHEELS / recipe.runtime if recipe.transient_build else wheel_cache
    try:
        built = False
        if force or not _find_local(client, reference, digest):
            _require_base(client, recipe, log)
            labels = _labels(recipe, digest, revision or source_revision())
            try:
                _build(client, recipe, inputs, reference, labels, wheel_dir, log)
            except ImageBuildError:
                if recipe.transient_build:
                    _prune_dangling(client, log)
                raise
            built = True
        pushed_digest = _push(client, reference, log, credentials)
        if recipe.transient_build:
            _drop_local(client, reference, log)
    finally:
        client.close()
        if recipe.transient_build:
            shutil.rmtree(wheel_dir, ignore_errors=True)
    return BuiltImage(recipe.runtime, recipe.version, reference, pushed_digest, digest, built=built, pushed=True)


def _require_base(client: docker.DockerClient, recipe: Recipe, log: Log = _quiet) -> None:
    if recipe.upstream is not None:
        _pull_upstream(client, recipe.upstream, log)
    if recipe.base_image is None:
        return
    try:
        client.images.get(recipe.base_image)
    except ImageNotFound as exc:
        raise ImageBuildError(
            f"base image {recipe.base_image} is not in the engine; `curate dev up` imports it "
            "(devstack.docker_engine.ensure_base_image)"
        ) from exc


def _pull_upstream(client: docker.DockerClient, pinned: str, log: Log) -> None:
    """Pull a wrapper's upstream image by its digest (never a tag), unless the engine has it already."""
    name = ImageName.parse(pinned)
    if name.digest is None or name.tag is not None:
        raise ImageBuildError(f"refusing to pull {pinned}: upstream images are pulled by a pinned digest only")
    try:
        client.images.get(pinned)
        return
    except ImageNotFound:
        pass
    try:
        credentials = registry_credentials(name.registry)
    except RegistryAuthError as exc:
        raise ImageBuildError(str(exc)) from exc
    log(f"pulling {pinned}")
    try:
        client.api.pull(
            f"{name.registry}/{name.repository}",
            tag=name.digest,
            auth_config=credentials.docker_auth_config() if credentials is not None else None,
        )
        client.images.get(pinned)
    except (APIError, ImageNotFound) as exc:
        raise ImageBuildError(
            f"upstream {pinned} unreachable: {exc}; build on a machine that reaches {name.registry}, or set "
            "images.upstream_mirror to a registry that serves it"
        ) from exc


def _build(
    client: docker.DockerClient,
    recipe: Recipe,
    inputs: BuildInputs,
    reference: str,
    labels: dict[str, str],
    wheel_dir: Path,
    log: Log,
) -> None:
    needs: dict[Path, set[str]] = {}  # wheel -> the requirement files that install it
    for part, text in inputs.requirements.items():
        lock = _without(text, inputs.compiled)
        for path in ensure_wheels(lock, wheel_dir, log) if pins(lock) else []:
            needs.setdefault(path, set()).add(part)
    wheels = [*sorted(needs), *(compiled.wheel for compiled in inputs.compiled.values())]
    with tempfile.TemporaryDirectory(prefix=f"ctx-{recipe.runtime}-", dir=wheel_dir.parent) as tmp:
        _context(recipe, inputs, Path(tmp))
        if not wheels:
            _run_build(client, Path(tmp), reference, labels, log)
            return
        releaser = WheelReleaser(needs, wheel_dir, log) if recipe.transient_build else None
        with serve_wheels(wheels) as server:
            on_step = releaser.step if releaser is not None else None
            _run_build(client, Path(tmp), reference, labels, log, wheels_url=server.url, on_step=on_step)


class WheelReleaser:
    """Deletes a transient build's wheels as soon as every layer that installs them is committed.

    Build steps run one after another and a step's log line appears once the step before it is committed, so
    when a step starts, the requirement file the previous RUN installed (`-r /tmp/<file>`) is done.
    """

    _INSTALLS = re.compile(r"\sRUN\s.*-r /tmp/(\S+)")

    def __init__(self, needs: dict[Path, set[str]], wheel_dir: Path, log: Log) -> None:
        self.needs = needs
        self.wheel_dir = wheel_dir
        self.log = log
        self.done: set[str] = set()
        self.current: str | None = None

    def step(self, line: str) -> None:
        if self.current is not None:
            self.done.add(self.current)
            freed = 0
            for path, parts in self.needs.items():
                if parts <= self.done and path.parent == self.wheel_dir and path.is_file():
                    freed += path.stat().st_size
                    path.unlink()
            if freed:
                self.log(f"deleted {freed / 1e9:.2f} GB of installed wheels from {self.wheel_dir}")
        match = self._INSTALLS.search(line)
        self.current = match.group(1) if match else None


def _drop_local(client: docker.DockerClient, reference: str, log: Log) -> None:
    """After a transient build's push: the registry holds the image, so the engine drops it and dangling layers."""
    try:
        client.images.remove(reference, force=True)
    except APIError as exc:
        log(f"could not remove the local copy of {reference}: {exc}")
        return
    log(f"removed the local copy of {reference}")
    _prune_dangling(client, log)


def _prune_dangling(client: docker.DockerClient, log: Log) -> None:
    """Remove untagged images (the layers a transient build left behind); they are GBs and never reused."""
    try:
        pruned = client.images.prune(filters={"dangling": True})
    except APIError as exc:
        log(f"could not prune dangling layers: {exc}")
        return
    log(f"pruned {(pruned.get('SpaceReclaimed') or 0) / 1e9:.2f} GB of dangling layers")


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
