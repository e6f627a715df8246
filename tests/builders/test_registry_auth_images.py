"""The image path through a registry that needs a login: the CNCF registry with htpasswd auth, as
`curate dev up --registry-auth` runs it. The session's hf-serve build is reused from the engine (no rebuild) and
pushed there logged in; Trivy scans and SBOMs it, the SBOM and report are attached, it is signed, verified and
pulled, every client with the credentials of the settings, none of them with the secret in argv, logs or records."""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import uuid
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.errors import APIError, ImageNotFound
from typer.testing import CliRunner

from builders.images import BuiltImage, build_image
from builders.recipes import get_recipe
from builders.sbom import validate_spdx
from builders.signing import attach_sbom, attach_scan_report, fetch_attached, sign_image
from devstack.docker_engine import DockerStack
from flows.cli.app import app
from flows.cli.exit_codes import ExitCode
from registry.credentials import registry_credentials
from registry.image_signatures import verify_image
from registry.keys import signing_key
from registry.oci import ImageName, OciAuthError, OciClient
from registry.settings import load_settings
from scanners import trivy
from tests.builders.test_images import tiny_recipe
from tests.fixtures.registry_auth import AuthRegistry, seed_layers
from validators.containers import ensure_image

pytestmark = [pytest.mark.integration, pytest.mark.docker]


class _TrivyRuns:
    """Records each Trivy run's argv and the credential variables of its environment, then runs it for real."""

    def __init__(self) -> None:
        self.argv: list[list[str]] = []
        self.env_keys: list[set[str]] = []
        self._run = subprocess.run

    def __call__(self, command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        self.argv.append(list(command))
        env = kwargs.get("env") or {}
        self.env_keys.append({key for key in env if key.startswith("TRIVY_")})
        result: subprocess.CompletedProcess[bytes] = self._run(command, **kwargs)
        return result


def _pull(client: docker.DockerClient, reference: str, auth: dict[str, str] | None) -> list[str]:
    """Pull through the engine; the errors its progress stream reported (the SDK's `images.pull` ignores them)."""
    repository, _, digest = reference.partition("@")
    stream = client.api.pull(repository, tag=digest, stream=True, decode=True, auth_config=auth)
    return [str(chunk["error"]) for chunk in stream if "error" in chunk]


def test_build_push_scan_sign_verify_pull_through_an_htpasswd_registry(
    hf_serve_image: BuiltImage,
    docker_stack: DockerStack,
    registry_login_env: AuthRegistry,
    clean_trivy_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    registry = registry_login_env
    secret = registry.login.password
    # Anonymous access is refused with one message that says what to set.
    with OciClient(registry.address) as anonymous, pytest.raises(OciAuthError, match="CURATE_IMAGES__REGISTRY_USER"):
        anonymous.tags("hf-serve")

    # Build (the session's hf-serve image is in the engine: reused, not rebuilt) and push, logged in.
    seed_layers(docker_stack.state_dir / "registry-data", registry.state_dir / "registry-data")
    log: list[str] = []
    built = build_image(
        get_recipe("hf-serve"), docker_host=docker_stack.docker_host, registry=registry.address, log=log.append
    )
    assert (built.built, built.pushed) == (False, True)
    assert (built.recipe_digest, built.digest) == (hf_serve_image.recipe_digest, hf_serve_image.digest)
    with OciClient.for_registry(registry.address) as oci:
        assert oci.manifest_digest("hf-serve", ImageName.parse(built.reference).ref) == built.digest
    # A new layer goes up through the login too.
    tiny = tiny_recipe("login-test", f"RUN echo {uuid.uuid4().hex} > /v")
    small = build_image(tiny, docker_host=docker_stack.docker_host, registry=registry.address, log=log.append)
    assert small.built and small.pushed

    # Trivy pulls from the registry with TRIVY_USERNAME / TRIVY_PASSWORD in its environment, not in its argv.
    runs = _TrivyRuns()
    monkeypatch.setattr(trivy.subprocess, "run", runs)
    options = trivy.TrivyOptions(
        cache_dir=clean_trivy_cache, skip_db_update=True, credentials=registry_credentials(registry.address)
    )
    sbom = trivy.sbom_spdx(built.pinned, options)
    assert {"torch", "transformers"} <= {p["name"] for p in json.loads(sbom)["packages"]}
    report = trivy.scan_image(small.pinned, options)
    assert report["ArtifactName"] == small.pinned and report["Results"]
    assert runs.env_keys == [{"TRIVY_USERNAME", "TRIVY_PASSWORD"}] * 2
    assert not any(secret in arg for argv in runs.argv for arg in argv)

    # Attach, sign and verify through the OCI client (credentials from the settings).
    sbom_ref = attach_sbom(built.reference, built.digest, sbom, validate_spdx(sbom))
    attach_scan_report(built.reference, built.digest, json.dumps(report).encode())
    assert fetch_attached(built.reference, built.digest, "sbom") == sbom
    key = signing_key(load_settings())
    signature = sign_image(built.reference, built.digest, key)
    assert verify_image(built.reference, key.public_key(), expected_digest=built.digest) == built.digest

    # Pull through the Docker Engine: anonymously refused, logged in pulled (its layers are already local).
    credentials = registry_credentials(registry.address)
    assert credentials is not None
    client = docker.DockerClient(base_url=docker_stack.docker_host, timeout=600)
    try:
        for name in (built.reference, built.pinned):  # untag only: the image stays under other names
            with contextlib.suppress(ImageNotFound):  # the digest goes with the last tag of its repository
                client.images.remove(name)
        with pytest.raises(APIError, match="no basic auth credentials"):
            _pull(client, built.pinned, None)
        ensure_image(client, built.pinned)  # what a validation cell does before it runs the image
        assert built.pinned in client.images.get(built.pinned).attrs["RepoDigests"]
    finally:
        client.close()

    # The secret is nowhere the pipeline writes to.
    written = [*log, caplog.text, json.dumps(report), sbom.decode(), sbom_ref.model_dump_json()]
    written.append(signature.model_dump_json())
    assert not any(secret in text for text in written)


def test_wrong_credentials_give_one_clear_cli_error(
    docker_stack: DockerStack, registry_login_env: AuthRegistry, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    wrong = "not-the-password"
    monkeypatch.setenv("CURATE_IMAGES__REGISTRY_PASSWORD", wrong)
    reference = f"{registry_login_env.address}/hf-serve:missing"
    result = CliRunner().invoke(app, ["--data-dir", str(tmp_path), "images", "verify", reference])
    assert result.exit_code == ExitCode.REFUSED
    output = result.output.strip()
    assert "Traceback" not in output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "refused the credentials of user 'curate'" in output
    assert "CURATE_IMAGES__REGISTRY_PASSWORD" in output
    assert wrong not in output and registry_login_env.login.password not in output
    assert output.count("error:") == 1
