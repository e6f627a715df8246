"""The hf-serve image, through the shared entrypoint: it serves a model staged and signed in Azurite on an
OpenAI-compatible /v1/chat/completions without a single request to the Hub, and a tampered or truncated blob
stops it before anything is served, naming the file and the region."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from builders.images import BuiltImage
from devstack.azurite import AzuriteStack
from devstack.docker_engine import DockerStack
from devstack.hub_server import HubServer
from devstack.net import free_port
from devstack.samples import SampleSet, tiny
from devstack.samples.build import export_repo
from registry.runtimes import get_runtime
from tests.builders.staged import REGION, new_key, run_to_exit, serving, stage_signed

pytestmark = [pytest.mark.integration, pytest.mark.docker]

REPO_ID = "curation-samples/tiny-llama-chat"  # also on the Hub test server: the trap below
REVISION = "c0ffee" + "0" * 34


def test_hf_serve_serves_a_signed_model_from_azurite_and_never_asks_the_hub(
    hf_serve_image: BuiltImage,
    docker_stack: DockerStack,
    azurite: AzuriteStack,
    sample_set: SampleSet,
    hub_factory: Callable[..., HubServer],
    tmp_path: Path,
) -> None:
    root = export_repo(sample_set.store(), REPO_ID, tmp_path / "repo")
    files = {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    staged = stage_signed(azurite, "weights-hfserve", REPO_ID, REVISION, files, new_key(tmp_path / "key"))
    hub = hub_factory(sample_set.store())
    port = free_port()
    runtime = get_runtime("hf-serve")
    # The trap: the Hub test server holds this very repo, and the container is told where it is and that it may
    # go online. Only the entrypoint's verified local copy may be served.
    env = staged.env(HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0")
    command = list(runtime.launch((), port=port, host="127.0.0.1").argv)
    health = f"http://127.0.0.1:{port}{runtime.health_path}"
    with serving(docker_stack.docker_host, hf_serve_image.pinned, command, env, health) as served:
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
    logs = served.logs
    assert f"{REPO_ID} ready" in logs and f"region {REGION}" in logs
    assert hub.requests.entries() == [], "the runtime asked the Hub"


def test_a_tampered_or_truncated_blob_stops_the_container_naming_file_and_region(
    hf_serve_image: BuiltImage, docker_stack: DockerStack, azurite: AzuriteStack, tmp_path: Path
) -> None:
    files = tiny.tiny_model_files("llama")
    staged = stage_signed(azurite, "weights-corrupt", REPO_ID, REVISION, files, new_key(tmp_path / "key"))
    command = ["--model-id", REPO_ID, "--port", str(free_port())]
    weights = files["model.safetensors"]

    staged.replace("model.safetensors", bytes([weights[0] ^ 1]) + weights[1:])
    code, logs = run_to_exit(docker_stack.docker_host, hf_serve_image.pinned, command, staged.env())
    assert code == 3, logs
    assert f"refusing to start: model.safetensors in region {REGION}: size or sha256 does not match" in logs

    staged.replace("model.safetensors", weights[: len(weights) // 2])
    code, logs = run_to_exit(docker_stack.docker_host, hf_serve_image.pinned, command, staged.env())
    assert code == 3, logs
    assert f"model.safetensors in region {REGION}" in logs and f"truncated: {len(weights) // 2} of" in logs
    assert "Uvicorn" not in logs and "ready in" not in logs
