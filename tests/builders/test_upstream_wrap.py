"""Mirror-and-wrap end to end with a stand-in upstream TEI image in the loopback registry (no Docker Hub here).

The stand-in `text-embeddings-router` image is pushed under TEI's own repository path and tags to the local
registry, which the policy names as the upstream mirror. `curate images pin` records its digest; the tag is then
moved to another build; the build flow still wraps the pinned digest, scans, signs and records the wrapper;
`curate images list` and `curate images verify` see it; started, its shared entrypoint fetches the signed weights
from Azurite with its own Python (the stand-in image has none on its PATH) and execs the stand-in server.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from devstack.azurite import AzuriteStack
from devstack.docker_engine import BASE_IMAGE, DockerStack, build_and_push
from devstack.net import free_port
from flows.build import build_runtime_images
from flows.cli.app import app
from registry.oci import ImageName
from registry.runtimes import get_runtime
from registry.runtimes.interface import TemplateKnobs, Upstream
from tests.builders.staged import new_key, serving, stage_signed

pytestmark = [pytest.mark.integration, pytest.mark.docker]

STANDIN = (Path(__file__).parent / "standin_tei.py").read_bytes()
REPO_ID = "curation-samples/tiny-embedder"
REVISION = "e1b0" + "0" * 36


def _standin_dockerfile(version: str) -> str:
    # The interpreter moves off the PATH: the wrapper's entrypoint must bring its own Python, as for TEI.
    return f"""\
FROM {BASE_IMAGE}
COPY text-embeddings-router /usr/local/bin/text-embeddings-router
RUN mkdir -p /opt/standin/bin && mv /usr/bin/python3.11 /opt/standin/bin/python3.11 \\
 && rm -f /usr/bin/python3 \\
 && sed -i '1i #!/opt/standin/bin/python3.11' /usr/local/bin/text-embeddings-router \\
 && chmod 755 /usr/local/bin/text-embeddings-router
ENV STANDIN_VERSION={version}
ENTRYPOINT ["text-embeddings-router"]
"""


def _push_standin(stack: DockerStack, version: str) -> str:
    """The stand-in under every TEI upstream path and tag, on the loopback registry; returns its digest."""
    declared = get_runtime("tei").image
    assert isinstance(declared, Upstream)
    digests = set()
    for image in declared.images.values():
        name = ImageName.parse(image.reference)
        mirrored = f"{stack.registry}/{name.repository}:{name.tag}"
        digests.add(build_and_push(stack, mirrored, _standin_dockerfile(version), {"text-embeddings-router": STANDIN}))
    [digest] = digests
    return digest


def _cli(*args: str) -> tuple[int, object]:
    result = CliRunner().invoke(app, [*args, "--json"])
    return result.exit_code, json.loads(result.stdout) if result.stdout.strip() else result.output


def test_pin_wrap_verify_and_serve_a_standin_upstream_image(
    prefect_harness: None,
    docker_stack: DockerStack,
    azurite: AzuriteStack,
    clean_trivy_cache: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    images = {
        "registry": docker_stack.registry,
        "upstream_mirror": docker_stack.registry,
        "pins_file": str(tmp_path / "pins.json"),
        "trivy_cache_dir": str(clean_trivy_cache),
        "trivy_skip_db_update": "true",
    }
    for key, value in images.items():
        monkeypatch.setenv(f"CURATE_IMAGES__{key.upper()}", value)
    monkeypatch.setenv("CURATE_DATA_DIR", str(tmp_path / "data"))

    code, rows = _cli("images", "list", "-r", "tei")
    assert code == 0 and isinstance(rows, list)
    assert rows[0]["reason"].startswith("not available: no pinned digest for ghcr.io/huggingface/")

    pinned = _push_standin(docker_stack, "v1")
    code, pins = _cli("images", "pin", "--runtime", "tei")
    assert code == 0, pins
    assert isinstance(pins, list) and {(p["vendor"], p["digest"], p["changed"]) for p in pins} == {
        ("cpu", pinned, True),
        ("nvidia", pinned, True),
    }
    code, rows = _cli("images", "list", "-r", "tei")
    assert isinstance(rows, list) and "not mirrored and wrapped yet" in rows[0]["reason"]

    moved = _push_standin(docker_stack, "v2")  # the tag moves after pinning: what is built must not
    assert moved != pinned
    outcomes = build_runtime_images(["tei"], docker_host=docker_stack.docker_host)
    assert [o.passed for o in outcomes] == [True, True], [o.reason for o in outcomes]
    upstream = f"{docker_stack.registry}/huggingface/text-embeddings-inference@{pinned}"
    assert all(o.image is not None and o.image.upstream == upstream for o in outcomes)
    assert all(o.image is not None and o.image.signature is not None and o.image.sbom is not None for o in outcomes)

    code, rows = _cli("images", "list", "-r", "tei")
    assert isinstance(rows, list) and rows[0]["available"] and rows[0]["image"]["upstream"] == upstream
    code, verified = _cli("images", "verify", rows[0]["reference"])
    assert code == 0 and isinstance(verified, dict) and verified["digest"] == rows[0]["digest"]

    files = {"config.json": b'{"model_type": "bert"}', "model.safetensors": b"\x08" + b"\0" * 7 + b"{}" * 4}
    staged = stage_signed(azurite, "weights-tei", REPO_ID, REVISION, files, new_key(tmp_path / "key"))
    tei = get_runtime("tei")
    port = free_port()
    command = list(tei.launch(tei.template_args(TemplateKnobs(context_length=512)), port=port, host="127.0.0.1").argv)
    wrapper = ImageName.parse(rows[0]["reference"]).with_digest(rows[0]["digest"])
    health = f"http://127.0.0.1:{port}{tei.health_path}"
    with serving(docker_stack.docker_host, wrapper, command, staged.env(), health) as served:
        info = httpx.get(f"http://127.0.0.1:{port}/info", timeout=30).json()
        embedded = httpx.post(f"http://127.0.0.1:{port}/v1/embeddings", json={"input": ["hi"]}, timeout=30).json()
    assert info["standin"] == "v1" and info["python_on_path"] is None
    assert info["files"] == sorted(files) and info["served_name"] == REPO_ID
    assert info["hub_offline"] == "1" and not info["blob_url_seen"]
    assert len(embedded["data"]) == 1
    assert "verified against its signature" in served.logs


def test_pin_says_when_the_upstream_registry_is_unreachable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CURATE_IMAGES__UPSTREAM_MIRROR", f"127.0.0.1:{free_port()}")
    monkeypatch.setenv("CURATE_IMAGES__PINS_FILE", str(tmp_path / "pins.json"))
    result = CliRunner().invoke(app, ["--data-dir", str(tmp_path / "data"), "images", "pin", "-r", "all"])
    assert result.exit_code == 4, result.output
    assert "unreachable" in result.output and "upstream_mirror" in result.output
    assert not (tmp_path / "pins.json").exists()
