"""Runtime images for real: dockerd + registry on loopback, hf-serve built offline, Trivy, SBOM, signing."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import docker
import pytest

from builders.errors import SbomError
from builders.images import LABEL_RECIPE, LABEL_RUNTIME, BuiltImage, build_image, image_labels
from builders.recipes import Recipe
from builders.sbom import validate_spdx
from builders.signing import attach_sbom, attach_scan_report, fetch_attached, sign_image
from devstack.docker_engine import BASE_IMAGE, DockerStack
from registry.image_signatures import ImageVerificationError, verify_image
from registry.oci import ImageName, OciClient, attached_tag
from registry.settings import AllowedCve, ImageSettings
from scanners.image_gate import gate
from scanners.trivy import TrivyOptions, sbom_spdx, scan_image
from tests.builders.staged import new_key

pytestmark = [pytest.mark.integration, pytest.mark.docker]


def tiny_recipe(runtime: str, body: str, files: dict[str, str] | None = None) -> Recipe:
    """A recipe that builds in seconds on the base image (for cache and tamper tests)."""
    return Recipe(
        runtime=runtime,
        version="1.0",
        source="https://example.invalid/tests",
        base_image=BASE_IMAGE,
        build_files={"Dockerfile": f"FROM {BASE_IMAGE}\n{body}\n", **(files or {})},
        accelerators=("cpu",),
    )


def _build(stack: DockerStack, recipe: Recipe) -> BuiltImage:
    return build_image(recipe, docker_host=stack.docker_host, registry=stack.registry)


def test_hf_serve_image_is_built_labelled_and_pushed(hf_serve_image: BuiltImage, docker_stack: DockerStack) -> None:
    image = hf_serve_image
    assert image.reference == f"{docker_stack.registry}/hf-serve:5.23.0-{image.recipe_digest[:12]}"
    name = ImageName.parse(image.reference)
    with OciClient(docker_stack.registry) as oci:
        assert oci.manifest_digest(name.repository, name.ref) == image.digest
    labels = image_labels(docker_stack.docker_host, image.reference)
    assert labels[LABEL_RUNTIME] == "hf-serve"
    assert labels[LABEL_RECIPE] == image.recipe_digest
    assert labels["org.opencontainers.image.version"] == "5.23.0"
    assert labels["org.opencontainers.image.source"].startswith("https://")
    assert labels["org.opencontainers.image.created"].endswith("Z")
    assert "org.opencontainers.image.revision" in labels
    # The wheels were installed in a build stage only: no layer of the final image carries them.
    client = docker.DockerClient(base_url=docker_stack.docker_host)
    try:
        history = client.images.get(image.reference).history()
    finally:
        client.close()
    assert not any("COPY wheels" in (step.get("CreatedBy") or "") for step in history)


def test_hf_serve_scan_gate_sbom_sign_verify(
    hf_serve_image: BuiltImage,
    planted_trivy_cache: Path,
    clean_trivy_cache: Path,
    tmp_path: Path,
) -> None:
    image = hf_serve_image
    pinned = image.pinned
    # 1. A planted fixable CRITICAL in a Debian package and in a pip package of the image fail the gate.
    report = scan_image(pinned, TrivyOptions(cache_dir=planted_trivy_cache, skip_db_update=True))
    summary = gate(report, ImageSettings())
    assert not summary.passed
    assert set(summary.blocking) == {"CVE-2099-0001", "CVE-2099-0002"}
    # 2. Allow-listing them, with recorded reasons, passes.
    allowed = ImageSettings(
        allowed_cves=(
            AllowedCve(id="CVE-2099-0001", reason="test: base-files ships no code"),
            AllowedCve(id="CVE-2099-0002", reason="test: safetensors path not reachable"),
        )
    )
    passed = gate(report, allowed)
    assert passed.passed and passed.allowed == ("CVE-2099-0001", "CVE-2099-0002")
    # 3. A valid SPDX 2.3 SBOM that lists what the image really has.
    sbom = sbom_spdx(pinned, TrivyOptions(cache_dir=clean_trivy_cache, skip_db_update=True))
    ref = validate_spdx(sbom)
    document = json.loads(sbom)
    assert document["spdxVersion"] == "SPDX-2.3"
    names = {p["name"] for p in document["packages"]}
    assert {"torch", "transformers", "base-files"} <= names
    assert ref.packages == len(document["packages"]) > 50
    broken = dict(document)
    broken.pop("SPDXID")
    with pytest.raises(SbomError):
        validate_spdx(json.dumps(broken).encode())
    # 4. SBOM and report are attached to the image in the registry.
    stored = attach_sbom(image.reference, image.digest, sbom, ref)
    assert stored.reference.endswith(attached_tag(image.digest, "sbom"))
    attach_scan_report(image.reference, image.digest, json.dumps(report).encode())
    assert fetch_attached(image.reference, image.digest, "sbom") == sbom
    assert json.loads(fetch_attached(image.reference, image.digest, "scan") or b"{}") == report
    # 5. Sign; verify by tag (with the recorded digest) and by pinned reference.
    key = new_key(tmp_path / "a")
    signature = sign_image(image.reference, image.digest, key)
    assert signature.signed_digest == image.digest and signature.key_id == key.key_id
    assert verify_image(image.reference, key.public_key(), expected_digest=image.digest) == image.digest
    assert verify_image(pinned, key.public_key()) == image.digest
    # 6. Another key is refused.
    other = new_key(tmp_path / "b")
    with pytest.raises(ImageVerificationError, match="another key"):
        verify_image(pinned, other.public_key())


def test_tampered_tag_and_moved_signature_are_refused(docker_stack: DockerStack, tmp_path: Path) -> None:
    nonce = uuid.uuid4().hex
    good = _build(docker_stack, tiny_recipe("tamper-test", f"RUN echo good-{nonce} > /v"))
    evil = _build(docker_stack, tiny_recipe("tamper-test", f"RUN echo evil-{nonce} > /v"))
    assert good.digest != evil.digest
    key = new_key(tmp_path / "k")
    sign_image(good.reference, good.digest, key)
    assert verify_image(good.reference, key.public_key(), expected_digest=good.digest) == good.digest
    name = ImageName.parse(good.reference)
    with OciClient(docker_stack.registry) as oci:
        # No signature at all on the other image.
        with pytest.raises(ImageVerificationError, match="no signature"):
            verify_image(evil.pinned, key.public_key())
        # Re-point the signed tag at the other image: the recorded digest no longer matches.
        evil_manifest = oci.get_manifest(name.repository, evil.digest)
        oci.put_manifest(name.repository, name.ref, evil_manifest.body, evil_manifest.media_type)
        with pytest.raises(ImageVerificationError, match="tag was moved"):
            verify_image(good.reference, key.public_key(), expected_digest=good.digest)
        with pytest.raises(ImageVerificationError, match="no signature"):
            verify_image(good.reference, key.public_key())
        # Copy the good signature onto the other digest: it is over another digest, so it is refused.
        sig = oci.get_manifest(name.repository, attached_tag(good.digest, "sig"))
        oci.put_manifest(name.repository, attached_tag(evil.digest, "sig"), sig.body, sig.media_type)
        with pytest.raises(ImageVerificationError, match="over sha256:"):
            verify_image(evil.pinned, key.public_key())
    # The pinned good image still verifies.
    assert verify_image(good.pinned, key.public_key()) == good.digest


def test_unchanged_recipe_is_reused_and_a_change_gives_a_new_digest(docker_stack: DockerStack) -> None:
    nonce = uuid.uuid4().hex
    recipe = tiny_recipe("cache-test", f"RUN echo {nonce} > /v")
    first = _build(docker_stack, recipe)
    assert first.built and first.pushed
    again = _build(docker_stack, recipe)
    assert not again.built and not again.pushed
    assert (again.reference, again.digest) == (first.reference, first.digest)
    changed = _build(docker_stack, tiny_recipe("cache-test", f"RUN echo {nonce}-changed > /v"))
    assert changed.built
    assert changed.reference != first.reference and changed.digest != first.digest


def test_a_secret_in_an_image_fails_the_gate(docker_stack: DockerStack, clean_trivy_cache: Path) -> None:
    token = "ghp_" + uuid.uuid4().hex[:20] + "AbCdEfGhIjKlMnOp"  # a GitHub token's shape (36 chars after ghp_)
    recipe = tiny_recipe(
        "secret-test", "COPY settings.env /app/settings.env", {"settings.env": f"GITHUB_TOKEN={token}\n"}
    )
    built = _build(docker_stack, recipe)
    report = scan_image(built.pinned, TrivyOptions(cache_dir=clean_trivy_cache, skip_db_update=True))
    summary = gate(report, ImageSettings())
    assert not summary.passed and summary.secrets >= 1
    assert any(item.startswith("secret:") for item in summary.blocking)
