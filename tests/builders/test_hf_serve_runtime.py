"""The hf-serve image serves a model staged in Azurite on an OpenAI-compatible /v1/chat/completions."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import docker
import httpx
import pytest
from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas

from builders.images import BuiltImage
from builders.recipes import get_recipe
from devstack.azurite import AzuriteStack
from devstack.docker_engine import DockerStack
from devstack.net import free_port, wait_for_http
from devstack.samples import tiny
from registry.blob_sas import parse_connection_string
from registry.blobs import MANIFEST_NAME, WeightsManifest
from registry.schema import Signature, StagedFile

pytestmark = [pytest.mark.integration, pytest.mark.docker]

REPO_ID = "curation-tests/tiny-chat"
REVISION = "c0ffee" + "0" * 34


def _stage(azurite: AzuriteStack, container: str) -> str:
    """Upload a tiny chat model in the staging layout and return a read-only container SAS URL."""
    files = tiny.tiny_model_files("llama")
    conn = azurite.connection_strings["eastus"]
    service = BlobServiceClient.from_connection_string(conn)
    client = service.get_container_client(container)
    client.create_container()
    prefix = f"{REPO_ID}/{REVISION}/"
    for name, data in files.items():
        client.upload_blob(prefix + name, data, overwrite=True)
    manifest = WeightsManifest(
        repo_id=REPO_ID,
        revision=REVISION,
        files=tuple(
            StagedFile(name=n, size=len(d), sha256=hashlib.sha256(d).hexdigest()) for n, d in sorted(files.items())
        ),
        signature=Signature(key_id="0" * 64, signed_digest="sha256:" + "0" * 64, reference="curation.sig"),
        region="eastus",
        staged_at=datetime.now(UTC),
    )
    client.upload_blob(prefix + MANIFEST_NAME, manifest.to_bytes(), overwrite=True)
    parts = parse_connection_string(conn)
    sas = generate_container_sas(
        account_name=parts["AccountName"],
        container_name=container,
        account_key=parts["AccountKey"],
        permission=ContainerSasPermissions(read=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    return f"{client.url}?{sas}"


def test_hf_serve_serves_a_model_staged_in_azurite(
    hf_serve_image: BuiltImage, docker_stack: DockerStack, azurite: AzuriteStack, tmp_path: Path
) -> None:
    url = _stage(azurite, "weights-hfserve")
    port = free_port()
    recipe = get_recipe("hf-serve")
    client = docker.DockerClient(base_url=docker_stack.docker_host)
    container = client.containers.run(
        hf_serve_image.pinned,
        command=recipe.launch_args(REPO_ID, port=port, host="127.0.0.1"),
        environment={"MODEL_BLOB_URL": url, "MODEL_REVISION": REVISION},
        network_mode="host",
        detach=True,
    )
    try:
        try:
            wait_for_http(f"http://127.0.0.1:{port}{recipe.health_path}", timeout=180)
        except TimeoutError:
            pytest.fail("hf-serve did not come up:\n" + container.logs().decode(errors="replace")[-3000:])
        models = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=30).json()
        assert REPO_ID in {m["id"] for m in models["data"]}
        response = httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json={
                "model": REPO_ID,
                "messages": [{"role": "user", "content": "Say hello."}],
                "max_tokens": 8,
                "temperature": 0,
            },
            timeout=180,
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["object"] == "chat.completion"
        assert isinstance(body["choices"][0]["message"]["content"], str)
        assert body["usage"]["completion_tokens"] >= 1
    finally:
        logs = container.logs().decode(errors="replace")
        container.remove(force=True)
        client.close()
    assert f"{REPO_ID} ready" in logs


def test_hf_serve_refuses_a_corrupt_staged_file(
    hf_serve_image: BuiltImage, docker_stack: DockerStack, azurite: AzuriteStack
) -> None:
    url = _stage(azurite, "weights-corrupt")
    conn = azurite.connection_strings["eastus"]
    blob = (
        BlobServiceClient.from_connection_string(conn)
        .get_container_client("weights-corrupt")
        .get_blob_client(f"{REPO_ID}/{REVISION}/config.json")
    )
    blob.upload_blob(b'{"tampered": true}', overwrite=True)
    client = docker.DockerClient(base_url=docker_stack.docker_host)
    try:
        container = client.containers.run(
            hf_serve_image.pinned,
            command=["--model-id", REPO_ID, "--port", str(free_port())],
            environment={"MODEL_BLOB_URL": url, "MODEL_REVISION": REVISION},
            network_mode="host",
            detach=True,
        )
        result = container.wait(timeout=120)
        logs = container.logs().decode(errors="replace")
        container.remove(force=True)
    finally:
        client.close()
    assert result["StatusCode"] == 3
    assert "sha256 does not match" in logs
