"""The regional blob store against Azurite (three accounts): block upload, resume, idempotence, copies."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from devstack.azurite import AzuriteStack, connection_string, dev_account_key
from devstack.net import free_port
from registry.blob_errors import BlobIntegrityError, StorageConfigError, StorageUnavailableError
from registry.blob_upload import block_id
from registry.blobs import RegionalBlobStore
from registry.settings import StorageSettings

BLOCK = 64 * 1024
REPO_ROOT = Path(__file__).resolve().parents[2]


def _store(storage: dict[str, Any], **overrides: Any) -> RegionalBlobStore:
    return RegionalBlobStore(StorageSettings.model_validate({**storage, "block_size": BLOCK, **overrides}))


def _random_file(path: Path, size: int, seed: int = 1) -> str:
    data = hashlib.sha256(str(seed).encode()).digest() * (size // 32 + 1)
    data = bytes((b + i) % 256 for i, b in enumerate(data[:size]))
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def test_block_ids_are_deterministic_and_fixed_length() -> None:
    sha = "ab" * 32
    assert block_id(sha, BLOCK, 3) == block_id(sha, BLOCK, 3)
    assert block_id(sha, BLOCK, 3) != block_id(sha, BLOCK * 2, 3)
    assert len({len(block_id(sha, BLOCK, i)) for i in (0, 9, 99_999)}) == 1


def test_upload_streams_blocks_and_is_idempotent(azurite_storage: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "w.bin"
    size = 5 * BLOCK + 123
    sha = _random_file(path, size)
    with _store(azurite_storage, max_concurrency=2) as store:
        meta = {"repo": "org/m", "revision": "0" * 40, "sha256": sha, "signature_digest": "s"}
        first = store.upload_file("eastus", "org/m/r/w.bin", path, sha256=sha, metadata=meta)
        assert (first.blocks_total, first.blocks_sent, first.blocks_reused, first.skipped) == (6, 6, 0, False)
        assert first.bytes_sent == size
        assert store.sha256_of("eastus", "org/m/r/w.bin") == (sha, size)
        assert store.read_range("eastus", "org/m/r/w.bin", BLOCK - 3, 10) == path.read_bytes()[BLOCK - 3 : BLOCK + 7]
        info = store.properties("eastus", "org/m/r/w.bin")
        assert info is not None and info.metadata == meta
        again = store.upload_file("eastus", "org/m/r/w.bin", path, sha256=sha, metadata=meta)
        assert again.skipped and again.blocks_sent == 0 and again.bytes_sent == 0


def test_server_side_copy_to_other_accounts(azurite_storage: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "w.bin"
    sha = _random_file(path, 3 * BLOCK, seed=2)
    with _store(azurite_storage) as store:
        meta = {"sha256": sha}
        store.upload_file("eastus", "a/b/c/w.bin", path, sha256=sha, metadata=meta)
        uploaded = store.counters.bytes_uploaded
        for region in ("westeurope", "southeastasia"):
            assert store.copy_blob("eastus", region, "a/b/c/w.bin", sha256=sha, size=3 * BLOCK, metadata=meta)
            assert store.sha256_of(region, "a/b/c/w.bin") == (sha, 3 * BLOCK)
            assert not store.copy_blob("eastus", region, "a/b/c/w.bin", sha256=sha, size=3 * BLOCK, metadata=meta)
        assert store.counters.bytes_uploaded == uploaded  # copies moved no bytes through the worker
        assert store.blob_url("westeurope", "a/").endswith(f"/westeurope/{azurite_storage['container']}/a/")


def test_tampered_blob_is_detected_by_streaming_hash(azurite_storage: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "w.bin"
    sha = _random_file(path, BLOCK + 7, seed=3)
    with _store(azurite_storage) as store:
        store.upload_file("eastus", "t/w.bin", path, sha256=sha, metadata={"sha256": sha})
        store.blob("eastus", "t/w.bin").upload_blob(b"x" * (BLOCK + 7), overwrite=True, metadata={"sha256": sha})
        assert store.sha256_of("eastus", "t/w.bin")[0] != sha
        with pytest.raises(BlobIntegrityError, match="missing"):
            store.sha256_of("eastus", "t/absent.bin")


_KILLED_UPLOAD = textwrap.dedent(
    """
    import sys, threading, time
    from pathlib import Path
    from registry.blobs import RegionalBlobStore
    from registry.settings import StorageSettings

    storage = StorageSettings.model_validate_json(sys.argv[1])
    path, sha = Path(sys.argv[2]), sys.argv[3]

    lock = threading.Lock()

    def progress(n: int) -> None:
        with lock:
            sys.stdout.write(f"block {n}\\n")
            sys.stdout.flush()
        time.sleep(0.3)  # slow enough that the parent kills it mid-file

    RegionalBlobStore(storage).upload_file(
        "eastus", "kill/w.bin", path, sha256=sha, metadata={"sha256": sha}, on_progress=progress
    )
    print("done", flush=True)
    """
)


def test_upload_killed_mid_file_resumes_without_resending(azurite_storage: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "w.bin"
    blocks = 24
    sha = _random_file(path, blocks * BLOCK - 5, seed=4)
    raw = {**azurite_storage, "block_size": BLOCK, "max_concurrency": 2}
    storage = StorageSettings.model_validate(raw)
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_UPLOAD, json.dumps(raw), str(path), sha],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        start_new_session=True,
    )
    seen = 0
    assert proc.stdout is not None
    for line in proc.stdout:
        assert line.startswith("block"), line
        seen += 1
        if seen == 6:
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    with RegionalBlobStore(storage) as store:
        assert store.properties("eastus", "kill/w.bin") is None  # nothing committed
        stats = store.upload_file("eastus", "kill/w.bin", path, sha256=sha, metadata={"sha256": sha})
        assert stats.blocks_reused >= seen
        assert stats.blocks_sent == blocks - stats.blocks_reused
        assert stats.bytes_sent < path.stat().st_size
        assert store.sha256_of("eastus", "kill/w.bin") == (sha, path.stat().st_size)


def test_unreachable_account_is_a_retryable_typed_error(azurite: AzuriteStack, tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    conn = connection_string("eastus", dev_account_key("eastus"), port)
    storage = {"regions": {"eastus": {"account": "eastus", "connection_string": conn}}}
    path = tmp_path / "w.bin"
    sha = _random_file(path, 100)
    with _store(storage, retries=0) as store, pytest.raises(StorageUnavailableError) as caught:
        store.upload_file("eastus", "x/w.bin", path, sha256=sha, metadata={})
    assert caught.value.retryable and "curate dev up" in str(caught.value)


def test_region_without_credentials_is_a_config_error() -> None:
    with pytest.raises(StorageConfigError, match="CONNECTION_STRING"):
        _store({"regions": {"eastus": {"account": "eastus"}}}).service("eastus")
    with pytest.raises(StorageConfigError, match="unknown region"):
        RegionalBlobStore(StorageSettings(), regions=("mars",))
