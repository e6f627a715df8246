"""The llama.cpp image, for real: it serves a signed GGUF staged in Azurite through the shared entrypoint and
passes the conformance suite's basic chat checks; and llama.cpp's own converter and quantizer derive GGUF files
from safetensors inside it with no network.

The first run compiles llama-cpp-python from its pinned sdist (~8 min on 2 cores, once per host) and builds the
image (~3 min); later runs reuse both (wheel cache, recipe digest).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import docker
import pytest
from gguf import GGUFReader

from builders.images import BuiltImage
from builders.recipes.llama_cpp import CONVERTER, PYTHON, QUANTIZER
from devstack.azurite import AzuriteStack
from devstack.docker_engine import DockerStack
from devstack.net import free_port
from devstack.samples import SampleSet
from devstack.samples.build import export_repo
from devstack.samples.expectations import SMOLLM2
from devstack.samples.real import smollm2_gguf
from registry.blobs import MANIFEST_NAME, SIGNATURE_NAME
from registry.runtimes import TemplateKnobs, get_runtime
from registry.schema import CheckStatus
from tests.builders.staged import REGION, new_key, serving, stage_signed
from validators.conformance import run_suite
from validators.conformance_checks.base import Target
from validators.weights_signing import sign_weights

pytestmark = [pytest.mark.integration, pytest.mark.docker]

REPO_ID = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"
REVISION = "9" * 40
# models.listing is not among them: llama-cpp-python 0.3.36 lists its model without `created` (docs/images.md).
BASIC_CHAT = (
    "chat.shape",
    "chat.model_echo",
    "chat.role",
    "chat.usage",
    "chat.finish_length",
    "stream.sse_framing",
    "stream.chunk_shape",
    "stream.same_id",
)


def test_llama_cpp_serves_a_signed_gguf_and_passes_basic_chat(
    llama_cpp_image: BuiltImage, docker_stack: DockerStack, azurite: AzuriteStack, tmp_path: Path
) -> None:
    gguf = smollm2_gguf()
    files = {gguf.name: gguf.read_bytes()}
    staged = stage_signed(azurite, "weights-llamacpp", REPO_ID, REVISION, files, new_key(tmp_path / "key"))
    runtime = get_runtime("llama-cpp")
    port = free_port()
    template_args = runtime.template_args(TemplateKnobs(context_length=2048))
    command = list(runtime.launch(template_args, port=port, host="127.0.0.1").argv)
    health = f"http://127.0.0.1:{port}{runtime.health_path}"
    with serving(docker_stack.docker_host, llama_cpp_image.pinned, command, staged.env(), health) as served:
        report = run_suite(Target(f"http://127.0.0.1:{port}/v1", REPO_ID, task="chat"))
    logs = served.logs
    statuses = {check.name: check for check in report.checks}
    failing = {name: statuses[name].detail for name in BASIC_CHAT if statuses[name].status is not CheckStatus.PASS}
    assert not failing, failing
    assert f"{REPO_ID} ready" in logs and f"region {REGION}" in logs


def _signed_dir(root: Path, source: Path, key_dir: Path) -> Path:
    """The model as a signed, staged directory (files + manifest + signature), for MODEL_DIR."""
    staged = root / "staged"
    staged.mkdir(parents=True)
    files = {p.name: p for p in source.iterdir() if p.is_file()}
    sign_weights(source, root / SIGNATURE_NAME, new_key(key_dir))
    (root / SIGNATURE_NAME).rename(staged / SIGNATURE_NAME)
    for name, path in files.items():
        os.link(path, staged / name)
    entries = [
        {"name": n, "size": p.stat().st_size, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
        for n, p in sorted(files.items())
    ]
    (staged / MANIFEST_NAME).write_text(json.dumps({"revision": REVISION, "files": entries}))
    return staged


def test_llama_cpp_converts_and_quantizes_inside_the_image_offline(
    llama_cpp_image: BuiltImage, docker_stack: DockerStack, sample_set: SampleSet, tmp_path: Path
) -> None:
    source = export_repo(sample_set.store(), SMOLLM2, tmp_path / "smollm2")
    staged = _signed_dir(tmp_path, source, tmp_path / "key")
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o777)  # the image runs as uid 10001
    key = (tmp_path / "key" / "key.pub.pem").read_text()
    client = docker.DockerClient(base_url=docker_stack.docker_host)
    volumes = {str(staged): {"bind": "/staged", "mode": "ro"}, str(out): {"bind": "/out", "mode": "rw"}}

    def run(command: list[str], entrypoint: list[str] | None = None, **env: str) -> str:
        raw: bytes = client.containers.run(
            llama_cpp_image.pinned,
            command=command,
            entrypoint=entrypoint,
            environment=env,
            volumes=volumes,
            network_mode="none",
            remove=True,
        )
        return raw.decode(errors="replace")

    try:
        # The converter reads the safetensors only once the shared entrypoint verified their signature.
        verified = {"MODEL_DIR": "/staged", "MODEL_ID": SMOLLM2, "MODEL_REVISION": REVISION}
        for outtype in ("q8_0", "f16"):
            convert = [CONVERTER, "{model_dir}", "--outtype", outtype, "--outfile", f"/out/{outtype}.gguf"]
            run(["--exec", PYTHON, *convert], **verified, MODEL_SIGNING_PUBLIC_KEY=key)
        run([QUANTIZER, "/out/f16.gguf", "/out/q4_k_m.gguf", "q4_k_m"], entrypoint=[PYTHON])
    finally:
        client.close()
    file_types = {}
    for name in ("q8_0", "f16", "q4_k_m"):
        field = GGUFReader(out / f"{name}.gguf").fields["general.file_type"]
        file_types[name] = int(field.parts[field.data[0]][0])
    assert file_types == {"q8_0": 7, "f16": 1, "q4_k_m": 15}
    assert (out / "q4_k_m.gguf").stat().st_size < (out / "q8_0.gguf").stat().st_size < (out / "f16.gguf").stat().st_size
