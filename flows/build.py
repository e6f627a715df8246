"""Stage 3 flows: build, scan, gate, sign and publish runtime images; re-scan published images weekly.

`build_runtime_images`: for every runtime in `images.runtimes` (plus `images.weekly_runtimes` when `weekly`, as
the weekly deployment runs it; buildable recipes only), build through the Docker Engine (cached by recipe digest),
push, scan the pushed digest with
Trivy, gate it by policy, write and validate the SPDX SBOM, attach SBOM and scan report to the image in the
registry, sign the digest, verify the signature, and record the `RuntimeImage` in the catalog store. An image
that fails the gate is never signed nor recorded. One markdown artifact per image carries the scan summary.

With `propose_updates` (the weekly deployment sets it) the flow also resolves each built runtime's requirements
afresh and lists in a `dependency-updates` artifact what `make lock-upgrade` would move; nothing changes until
a maintainer re-locks and commits.

`rescan_images`: re-scan every recorded image digest with the current database, record the new scan, and
flag every published catalog entry that uses an image that now fails the gate.
"""

from __future__ import annotations

import json
import os
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, ConfigDict

from builders.errors import BuildersError
from builders.images import BuiltImage, build_image
from builders.locks import proposed_updates
from builders.recipes import Recipe, all_recipes, get_recipe
from builders.sbom import complete_license_refs, validate_spdx
from builders.signing import attach_sbom, attach_scan_report, sign_image
from builders.wrap import wrapper_recipe
from decisions.reconciliation import flagged_by_rescan
from flows.settings import settings_from
from registry.artifacts import artifact_key, cell
from registry.catalog import CatalogStore
from registry.errors import RegistryError
from registry.image_signatures import verify_image
from registry.keys import signing_key
from registry.schema import EntryStatus, RuntimeImage, ScanSummary
from registry.settings import Settings
from registry.upstream import UpstreamNotPinnedError, pinned_runtimes, upstream_sources
from scanners.errors import ScannerError
from scanners.image_gate import allow_reasons, gate, summary_markdown
from scanners.trivy import TrivyOptions, db_updated_at, sbom_spdx, scan_image, trivy_version


class ImageGateError(BuildersError):
    """At least one image failed its build, scan gate or signature check; see the flow's artifacts."""


class ImageOutcome(BaseModel):
    """What happened to one runtime's image in a run."""

    model_config = ConfigDict(frozen=True)

    runtime: str
    reference: str = ""
    digest: str = ""
    built: bool = False
    passed: bool = False
    reason: str = ""
    image: RuntimeImage | None = None
    scan: ScanSummary | None = None


def _docker_host(explicit: str | None) -> str:
    host = explicit or os.environ.get("DOCKER_HOST")
    if not host:
        raise ImageGateError("no Docker Engine: set DOCKER_HOST or run `curate dev up` and `eval $(curate dev env)`")
    return host


@task(name="scan-image", retries=1, retry_delay_seconds=10)
def scan_task(pinned: str, settings: Settings) -> tuple[ScanSummary, bytes]:
    options = TrivyOptions.from_settings(settings)
    report = scan_image(pinned, options)
    summary = gate(report, settings.images, scanner_version=trivy_version(), db_updated=db_updated_at(options))
    summary = summary.model_copy(update={"policy_digest": settings.policy_digest("images")})
    return summary, json.dumps(report, separators=(",", ":")).encode()


def _already_recorded(settings: Settings, built: BuiltImage) -> RuntimeImage | None:
    """The recorded image of a digest this run did not build, when it passed the gate under this image policy
    and is signed: only its signature is verified again (the weekly rescan re-checks its CVEs)."""
    if built.built:
        return None
    with CatalogStore.from_settings(settings) as store:
        image = store.image(built.digest)
    if image is None or image.signature is None or image.scan is None or not image.scan.passed:
        return None
    if image.scan.policy_digest != settings.policy_digest("images") or image.reference != built.reference:
        return None
    verify_image(built.reference, signing_key(settings).public_key(), expected_digest=built.digest)
    return image


def _sign_and_record(
    recipe: Recipe, built: BuiltImage, settings: Settings, summary: ScanSummary, report: bytes
) -> RuntimeImage:
    """Attach the SBOM and scan report to an image that passed its gate, sign and verify it, and record it."""
    sbom_bytes = complete_license_refs(sbom_spdx(built.pinned, TrivyOptions.from_settings(settings)))
    sbom = attach_sbom(built.reference, built.digest, sbom_bytes, validate_spdx(sbom_bytes))
    attach_scan_report(built.reference, built.digest, report)
    key = signing_key(settings)
    signature = sign_image(built.reference, built.digest, key)
    verify_image(built.reference, key.public_key(), expected_digest=built.digest)
    image = RuntimeImage(
        runtime=recipe.runtime,
        version=recipe.version,
        reference=built.reference,
        digest=built.digest,
        recipe_digest=built.recipe_digest,
        upstream=recipe.upstream or "",
        vendors=recipe.accelerators,
        sbom=sbom,
        scan=summary,
        signature=signature,
    )
    CatalogStore.from_settings(settings).record_image(image)
    return image


def image_recipes(runtime: str, settings: Settings) -> list[Recipe | ImageOutcome]:
    """What to build for `runtime`: its recipe built here, or one wrapper per upstream image pinned by digest
    (builders/wrap.py), with an outcome saying why for each upstream image that is not pinned."""
    declared = pinned_runtimes(settings.images).get(runtime)
    if declared is None or declared.built_here:
        return [get_recipe(runtime)]
    planned: list[Recipe | ImageOutcome] = []
    for upstream in upstream_sources(declared):
        try:
            pinned = upstream.pinned_source(settings.images.upstream_mirror)
        except UpstreamNotPinnedError as exc:
            planned.append(ImageOutcome(runtime=runtime, reason=f"not available ({upstream.vendor}): {exc}"))
            continue
        planned.append(wrapper_recipe(declared, upstream.vendor, pinned))
    return planned


def _publish_one(recipe: Recipe, settings: Settings, docker_host: str, registry: str, force: bool) -> ImageOutcome:
    logger = get_run_logger()
    runtime = recipe.runtime
    built = build_image(recipe, docker_host=docker_host, registry=registry, force=force, log=logger.debug)
    logger.info("%s: %s (%s)", runtime, built.reference, "built" if built.built else "reused")
    recorded = _already_recorded(settings, built)
    if recorded is not None:
        logger.info("%s: %s is recorded, scanned and signed; its signature verified", runtime, built.digest)
        return ImageOutcome(
            runtime=runtime,
            reference=built.reference,
            digest=built.digest,
            passed=True,
            image=recorded,
            scan=recorded.scan,
        )
    pinned = built.pinned
    summary, report = scan_task(pinned, settings)
    create_markdown_artifact(
        key=artifact_key("image-scan", runtime),
        markdown=summary_markdown(pinned, summary, allow_reasons(settings.images)),
        description=f"Trivy scan of {runtime} {recipe.version}",
    )
    if not summary.passed:
        return ImageOutcome(
            runtime=runtime,
            reference=built.reference,
            digest=built.digest,
            built=built.built,
            reason="gate failed: " + ", ".join(summary.blocking),
            scan=summary,
        )
    image = _sign_and_record(recipe, built, settings, summary, report)
    return ImageOutcome(
        runtime=runtime,
        reference=built.reference,
        digest=built.digest,
        built=built.built,
        passed=True,
        image=image,
        scan=summary,
    )


@flow(name="build-runtime-images")
def build_runtime_images(
    runtimes: list[str] | None = None,
    *,
    docker_host: str | None = None,
    registry: str | None = None,
    force: bool = False,
    fail_on_gate: bool = True,
    propose_updates: bool = False,
    weekly: bool = False,
    settings_overrides: dict[str, Any] | None = None,
) -> list[ImageOutcome]:
    """Build, push, scan, gate, sign, verify and record the runtime images.

    Default runtimes: `images.runtimes`, plus the opted-in large images of `images.weekly_runtimes` when
    `weekly` (the weekly build-runtime-images deployment sets it; weekly-curation and `make demo` do not).
    """
    settings = settings_from(settings_overrides)
    host = _docker_host(docker_host)
    target = registry or settings.images.registry
    outcomes: list[ImageOutcome] = []
    for runtime in runtimes or default_runtimes(settings, weekly=weekly):
        policy = settings.runtimes.get(runtime)
        if policy is not None and not policy.enabled:
            outcomes.append(ImageOutcome(runtime=runtime, reason="disabled in curation.toml [runtimes]"))
            continue
        outcomes += _publish_runtime(runtime, settings, host, target, force)
    if propose_updates:
        propose_dependency_updates([o.runtime for o in outcomes if "disabled" not in o.reason])
    failed = [o for o in outcomes if not o.passed and "disabled" not in o.reason]
    if failed and fail_on_gate:
        raise ImageGateError("; ".join(f"{o.runtime}: {o.reason}" for o in failed))
    return outcomes


def _publish_runtime(runtime: str, settings: Settings, host: str, target: str, force: bool) -> list[ImageOutcome]:
    """Every image of one runtime: its recipe, or its wrapped upstream images (one per pinned vendor)."""
    logger = get_run_logger()
    outcomes: list[ImageOutcome] = []
    try:
        planned = image_recipes(runtime, settings)
    except (BuildersError, RegistryError) as exc:
        planned = [ImageOutcome(runtime=runtime, reason=str(exc))]
    for item in planned:
        try:
            outcome = item if isinstance(item, ImageOutcome) else _publish_one(item, settings, host, target, force)
        except (BuildersError, ScannerError) as exc:
            logger.error("%s: %s", runtime, exc)
            outcome = ImageOutcome(runtime=runtime, reason=str(exc))
        if not outcome.passed:
            logger.error("%s: not published: %s", runtime, outcome.reason)
        outcomes.append(outcome)
    return outcomes


def default_runtimes(settings: Settings, *, weekly: bool) -> list[str]:
    """What a build without named runtimes builds: `images.runtimes`, and `images.weekly_runtimes` when weekly."""
    names = list(settings.images.runtimes)
    if weekly:
        names += [name for name in settings.images.weekly_runtimes if name not in names]
    return names


def propose_dependency_updates(runtimes: list[str], index_args: tuple[str, ...] = ()) -> str:
    """The `dependency-updates` artifact: per built runtime, what a fresh resolution would change in its lock."""
    lines = [
        "# Proposed dependency updates",
        "",
        "What `make lock-upgrade` would change in each image's lock (builders/recipes/locks/). Re-lock, rebuild, and "
        "let the weekly run re-validate before committing.",
        "",
        "| runtime | proposed changes |",
        "| --- | --- |",
    ]
    for runtime in runtimes:
        recipe = all_recipes().get(runtime)  # a wrapped upstream image has no lock of its own
        if recipe is None or not recipe.requirements:
            continue
        try:
            updates = proposed_updates(recipe.requirements, recipe.lock, index_args=index_args)
            text = "; ".join(update.change for update in updates) or "none: the lock is current"
        except BuildersError as exc:
            text = f"could not resolve: {exc}"
        lines.append(f"| {runtime} | {cell(text)} |")
    markdown = "\n".join(lines) + "\n"
    create_markdown_artifact(
        key="dependency-updates", markdown=markdown, description="Lock updates the weekly image rebuild proposes"
    )
    return markdown


# --------------------------------------------------------------------------------------------- rescan


class RescanOutcome(BaseModel):
    model_config = ConfigDict(frozen=True)

    reference: str
    digest: str
    passed: bool
    was_passing: bool
    blocking: tuple[str, ...] = ()
    flagged_entries: tuple[str, ...] = ()
    error: str = ""


@flow(name="rescan-images")
def rescan_images(settings_overrides: dict[str, Any] | None = None) -> list[RescanOutcome]:
    """Re-scan every recorded image digest; flag published entries that use an image that now fails."""
    logger = get_run_logger()
    settings = settings_from(settings_overrides)
    store = CatalogStore.from_settings(settings)
    outcomes: list[RescanOutcome] = []
    lines = [
        "# Image rescan",
        "",
        "| image | gate | blocking | flagged entries |",
        "| --- | --- | --- | --- |",
    ]
    for image in store.images():
        was_passing = bool(image.scan and image.scan.passed)
        try:
            summary, _ = scan_task(image.pinned, settings)
        except ScannerError as exc:
            logger.error("%s: rescan failed: %s", image.pinned, exc)
            outcomes.append(
                RescanOutcome(
                    reference=image.reference,
                    digest=image.digest,
                    passed=False,
                    was_passing=was_passing,
                    error=str(exc),
                )
            )
            continue
        store.record_image(image.model_copy(update={"scan": summary}))
        flagged: list[str] = []
        for entry_id, reason in flagged_by_rescan(store.entries(EntryStatus.PUBLISHED), image, summary):
            store.set_entry_status(entry_id, EntryStatus.FLAGGED, reason)
            flagged.append(entry_id)
        if not summary.passed:
            logger.warning("%s fails the gate now; flagged %d entries", image.pinned, len(flagged))
        outcomes.append(
            RescanOutcome(
                reference=image.reference,
                digest=image.digest,
                passed=summary.passed,
                was_passing=was_passing,
                blocking=summary.blocking,
                flagged_entries=tuple(flagged),
            )
        )
        gate, blocking = "pass" if summary.passed else "FAIL", ", ".join(summary.blocking) or "-"
        lines.append(f"| {cell(image.pinned)} | {gate} | {cell(blocking)} | {cell(', '.join(flagged) or '-')} |")
    create_markdown_artifact(key="image-rescan", markdown="\n".join(lines) + "\n", description="Weekly image rescan")
    return outcomes
