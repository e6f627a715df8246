"""Stage a model into Azurite the way the stage flow lays it out (files, manifest, model-signing signature), for
tests that start runtime images directly; run a container to its exit, or serve with one until a block ends."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import docker
import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient, ContainerSasPermissions, generate_container_sas

from devstack.azurite import AzuriteStack
from devstack.net import wait_for_http
from registry.blob_sas import parse_connection_string
from registry.blobs import MANIFEST_NAME, SIGNATURE_NAME, WeightsManifest, signature_blob_name
from registry.keys import KeyPair, generate_private_pem, key_id, load_private_key, public_pem
from registry.schema import StagedFile
from validators.weights_signing import sign_weights

REGION = "eastus"


@dataclass(frozen=True)
class Staged:
    """One staged model: what a runtime container needs to fetch it, and the container client to tamper with it."""

    repo_id: str
    revision: str
    container_url: str
    key: KeyPair
    blobs: ContainerClient

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "MODEL_BLOB_URL": self.container_url,
            "MODEL_ID": self.repo_id,
            "MODEL_REVISION": self.revision,
            "MODEL_REGION": REGION,
            "MODEL_SIGNING_PUBLIC_KEY": self.key.public_path.read_text(),
            **extra,
        }

    def replace(self, name: str, data: bytes) -> None:
        self.blobs.upload_blob(f"{self.repo_id}/{self.revision}/{name}", data, overwrite=True)


def new_key(directory: Path) -> KeyPair:
    directory.mkdir(parents=True, exist_ok=True)
    private = directory / "key.pem"
    private.write_bytes(generate_private_pem())
    key = load_private_key(private.read_bytes())
    public = directory / "key.pub.pem"
    public.write_bytes(public_pem(key))
    return KeyPair(private_path=private, public_path=public, key_id=key_id(key))


def stage_signed(
    azurite: AzuriteStack, container: str, repo_id: str, revision: str, files: dict[str, bytes], key: KeyPair
) -> Staged:
    """Upload `files` under `<repo>/<revision>/` with the manifest and a real model-signing signature."""
    service = BlobServiceClient.from_connection_string(azurite.connection_strings[REGION])
    client = service.get_container_client(container)
    client.create_container()
    prefix = f"{repo_id}/{revision}/"
    with tempfile.TemporaryDirectory(prefix="stage-") as tmp:
        signed = Path(tmp) / "files"
        for name, data in files.items():
            (signed / name).parent.mkdir(parents=True, exist_ok=True)
            (signed / name).write_bytes(data)
        signature = sign_weights(signed, Path(tmp) / SIGNATURE_NAME, key)
        blob = prefix + signature_blob_name(signature)  # content-addressed, as the stage flow names it
        client.upload_blob(blob, (Path(tmp) / SIGNATURE_NAME).read_bytes(), overwrite=True)
    for name, data in files.items():
        client.upload_blob(prefix + name, data, overwrite=True)
    manifest = WeightsManifest(
        repo_id=repo_id,
        revision=revision,
        files=tuple(
            StagedFile(name=n, size=len(d), sha256=hashlib.sha256(d).hexdigest()) for n, d in sorted(files.items())
        ),
        signature=signature,
        region=REGION,
        staged_at=datetime.now(UTC),
    )
    client.upload_blob(prefix + MANIFEST_NAME, manifest.to_bytes(), overwrite=True)
    parts = parse_connection_string(azurite.connection_strings[REGION])
    sas = generate_container_sas(
        account_name=parts["AccountName"],
        container_name=container,
        account_key=parts["AccountKey"],
        permission=ContainerSasPermissions(read=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    return Staged(repo_id, revision, f"{client.url}?{sas}", key, client)


def run_to_exit(docker_host: str, image: str, command: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run a container on the host network until it exits: (exit code, log)."""
    client = docker.DockerClient(base_url=docker_host)
    try:
        container = client.containers.run(image, command=command, environment=env, network_mode="host", detach=True)
        try:
            result = container.wait(timeout=180)
            return int(result["StatusCode"]), container.logs().decode(errors="replace")
        finally:
            container.remove(force=True)
    finally:
        client.close()


@dataclass
class Served:
    """A server container's log, filled in once the `serving` block has ended."""

    logs: str = ""


@contextmanager
def serving(docker_host: str, image: str, command: list[str], env: dict[str, str], health_url: str) -> Iterator[Served]:
    """Run a server container on the host network, wait for its health URL, yield; then remove it."""
    client = docker.DockerClient(base_url=docker_host)
    container = client.containers.run(image, command=command, environment=env, network_mode="host", detach=True)
    served = Served()
    try:
        try:
            wait_for_http(health_url, timeout=180)
        except TimeoutError:
            pytest.fail(f"{image} did not come up:\n" + container.logs().decode(errors="replace")[-3000:])
        yield served
    finally:
        served.logs = container.logs().decode(errors="replace")
        container.remove(force=True)
        client.close()
