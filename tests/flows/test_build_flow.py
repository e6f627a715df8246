"""The stage-3 flows end to end: build -> scan -> gate -> SBOM -> sign -> verify -> record; rescan flags entries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from builders.images import BuiltImage
from devstack.docker_engine import DockerStack
from flows.build import ImageGateError, build_runtime_images, default_runtimes, rescan_images
from registry.catalog import CatalogStore
from registry.image_signatures import verify_image
from registry.keys import signing_key
from registry.schema import CatalogEntry, EntryStatus, LicenseReference, ModelRef, StagedWeights
from registry.settings import load_settings

pytestmark = [pytest.mark.integration, pytest.mark.docker]

ALLOW = [
    {"id": "CVE-2099-0001", "reason": "test: base-files ships no code"},
    {"id": "CVE-2099-0002", "reason": "test: accepted until the fixed wheel is released"},
]


def _entry(entry_id: str, repo_id: str, images: dict[str, str]) -> CatalogEntry:
    ref = ModelRef(repo_id=repo_id, revision="d" * 40)
    return CatalogEntry(
        id=entry_id,
        model=ref,
        license=LicenseReference(spdx="Apache-2.0"),
        task="chat",
        templates=(),
        weights=StagedWeights(ref=ref, files=()),
        images=images,
    )


def test_build_flow_then_rescan_flags_entries(
    prefect_harness: None,
    hf_serve_image: BuiltImage,
    docker_stack: DockerStack,
    planted_trivy_cache: Path,
    tmp_path: Path,
) -> None:
    images: dict[str, Any] = {
        "registry": docker_stack.registry,
        "trivy_cache_dir": str(planted_trivy_cache),
        "trivy_skip_db_update": True,
    }
    strict = {"data_dir": str(tmp_path / "data"), "images": images}
    allowing = {"data_dir": str(tmp_path / "data"), "images": {**images, "allowed_cves": ALLOW}}
    store = CatalogStore.from_settings(load_settings(**strict))

    # The planted CVEs fail the gate: the flow fails and nothing is recorded or signed.
    with pytest.raises(ImageGateError, match="CVE-2099-0001"):
        build_runtime_images(["hf-serve"], docker_host=docker_stack.docker_host, settings_overrides=strict)
    assert store.images("hf-serve") == []

    # Allow-listed (with reasons): published, signed, verified and recorded; the build is reused.
    outcomes = build_runtime_images(["hf-serve"], docker_host=docker_stack.docker_host, settings_overrides=allowing)
    assert [o.passed for o in outcomes] == [True] and not outcomes[0].built
    [image] = store.images("hf-serve")
    assert image.digest == hf_serve_image.digest and image.reference == hf_serve_image.reference
    assert image.recipe_digest == hf_serve_image.recipe_digest
    assert image.scan is not None and image.scan.passed and image.scan.allowed == ("CVE-2099-0001", "CVE-2099-0002")
    assert image.sbom is not None and image.sbom.packages > 50 and image.sbom.reference.endswith(".sbom")
    assert image.signature is not None and image.signature.signed_digest == image.digest
    key = signing_key(load_settings(**strict))
    assert image.signature.key_id == key.key_id
    assert verify_image(image.reference, key.public_key(), expected_digest=image.digest) == image.digest

    # Two published entries, one using the image; the allow-list is withdrawn and the weekly rescan runs.
    store.publish(_entry("org--uses-image", "org/uses-image", {"hf-serve": image.pinned}))
    store.publish(_entry("org--other", "org/other", {"vllm": "127.0.0.1:1/vllm@sha256:" + "e" * 64}))
    [rescan] = rescan_images(settings_overrides=strict)
    assert rescan.was_passing and not rescan.passed
    assert rescan.flagged_entries == ("org--uses-image",)
    flagged = store.entry("org--uses-image")
    assert flagged is not None and flagged.status is EntryStatus.FLAGGED
    assert "CVE-2099-0001" in flagged.status_reason
    other = store.entry("org--other")
    assert other is not None and other.status is EntryStatus.PUBLISHED
    [recorded] = store.images("hf-serve")
    assert recorded.scan is not None and not recorded.scan.passed


def test_dependency_update_proposals_become_an_artifact(prefect_harness: Any, tmp_path: Path) -> None:
    from prefect import flow

    from flows.build import propose_dependency_updates

    @flow(name="propose-updates-test")
    def propose() -> str:
        return propose_dependency_updates(["hf-serve"], index_args=("--no-index", "--find-links", str(tmp_path)))

    markdown = propose()
    assert "| hf-serve | could not resolve:" in markdown and "make lock-upgrade" in markdown


def test_large_images_are_built_only_by_the_weekly_deployment_where_the_policy_opts_in() -> None:
    """weekly-curation and `make demo` build `images.runtimes`; vLLM and SGLang only when asked or opted in."""
    settings = load_settings()
    assert default_runtimes(settings, weekly=False) == list(settings.images.runtimes)
    assert default_runtimes(settings, weekly=True) == list(settings.images.runtimes)  # the shipped policy: none
    opted = load_settings(images={"weekly_runtimes": ["vllm", "hf-serve"]})
    assert default_runtimes(opted, weekly=False) == list(opted.images.runtimes)
    assert default_runtimes(opted, weekly=True) == [*opted.images.runtimes, "vllm"]
