"""`curate images list|verify` against the real registry (the build/rescan commands run the tested flows)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from builders.images import build_image
from builders.recipes import Recipe
from builders.signing import sign_image
from devstack.docker_engine import BASE_IMAGE, DockerStack
from flows.cli.app import app
from registry.catalog import CatalogStore
from registry.keys import signing_key
from registry.schema import RuntimeImage
from registry.settings import load_settings

pytestmark = [pytest.mark.integration, pytest.mark.docker]


def _tiny(stack: DockerStack, marker: str) -> tuple[str, str]:
    recipe = Recipe(
        runtime="cli-test",
        version="1.0",
        base_image=BASE_IMAGE,
        build_files={"Dockerfile": f"FROM {BASE_IMAGE}\nRUN echo {marker} > /v\n"},
        accelerators=("cpu",),
    )
    built = build_image(recipe, docker_host=stack.docker_host, registry=stack.registry)
    return built.reference, built.digest


def test_images_list_and_verify(docker_stack: DockerStack, tmp_path: Path) -> None:
    runner = CliRunner()
    data = tmp_path / "data"
    settings = load_settings(data_dir=data)
    listed = runner.invoke(app, ["--data-dir", str(data), "images", "list", "--history", "--json"])
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout) == []

    signed_ref, signed_digest = _tiny(docker_stack, uuid.uuid4().hex)
    sign_image(signed_ref, signed_digest, signing_key(settings))
    CatalogStore.from_settings(settings).record_image(
        RuntimeImage(runtime="cli-test", version="1.0", reference=signed_ref, digest=signed_digest)
    )
    ok = runner.invoke(app, ["--data-dir", str(data), "images", "verify", signed_ref, "--json"])
    assert ok.exit_code == 0, ok.output
    result = json.loads(ok.stdout)
    assert result["verified"] is True and result["digest"] == signed_digest
    assert result["image"]["reference"] == signed_ref

    unsigned_ref, _ = _tiny(docker_stack, uuid.uuid4().hex)
    bad = runner.invoke(app, ["--data-dir", str(data), "images", "verify", unsigned_ref, "--json"])
    assert bad.exit_code == 1
    assert json.loads(bad.stdout)["verified"] is False

    listed = runner.invoke(app, ["--data-dir", str(data), "images", "list", "--history", "--json"])
    assert [i["digest"] for i in json.loads(listed.stdout)] == [signed_digest]
