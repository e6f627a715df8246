"""Resumable, idempotent block uploads with bounded memory.

The file is read one block of `storage.block_size` at a time (at most `storage.max_concurrency` blocks in
memory and in flight), each block carries a Content-MD5 the service checks, and block ids are derived from the
file's sha256, the block size and the block index. A re-run after a crash therefore finds the blocks already
sent in the blob's uncommitted block list and sends only the rest. A committed blob is skipped only when its
content is known to match: same size, and its sha256 re-computed by streaming it back equals the file's
(`holds_content`). Metadata is never trusted for that: whoever can write a blob can write its metadata too.
"""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobBlock

if TYPE_CHECKING:
    from registry.blobs import BlobInfo, RegionalBlobStore


@dataclass
class UploadStats:
    """What one `upload_file` did: `blocks_sent` were transferred now, `blocks_reused` were found staged."""

    blob_name: str
    size: int
    blocks_total: int = 0
    blocks_sent: int = 0
    blocks_reused: int = 0
    bytes_sent: int = 0
    skipped: bool = False


def block_id(sha256: str, block_size: int, index: int) -> str:
    """Deterministic block id: the same file, block size and index always give the same id (fixed length)."""
    raw = f"{sha256[:32]}-{block_size:08x}-{index:06d}"  # 48 bytes: Azure allows at most 64 before base64
    return base64.b64encode(raw.encode()).decode()


def holds_content(store: RegionalBlobStore, region: str, info: BlobInfo | None, sha256: str, size: int) -> bool:
    """Whether a committed blob holds exactly this content: its size, then its sha256 re-computed by reading it.

    Reading costs one download of the blob (only when the size already matches); it is what makes a skip safe.
    """
    if info is None or info.size != size or info.copy_status not in (None, "success"):
        return False
    actual, length = store.sha256_of(region, info.name)
    return actual == sha256 and length == size


def upload_file(
    store: RegionalBlobStore,
    region: str,
    name: str,
    path: Path,
    *,
    sha256: str,
    metadata: Mapping[str, str],
    on_progress: Callable[[int], None] | None = None,
) -> UploadStats:
    """Block-upload `path` as `name` (resumable, idempotent); `sha256` is the file's verified digest."""
    size = path.stat().st_size
    stats = UploadStats(blob_name=name, size=size)
    store.ensure_container(region)
    existing = store.properties(region, name)
    if holds_content(store, region, existing, sha256, size):
        refresh_metadata(store, region, existing, metadata)
        stats.skipped = True
        if on_progress is not None:
            on_progress(size)
        return stats
    block_size = store.block_size
    count = max(1, -(-size // block_size))
    stats.blocks_total = count
    ids = [block_id(sha256, block_size, i) for i in range(count)]
    staged = _uncommitted(store, region, name)
    todo: list[int] = []
    for index, bid in enumerate(ids):
        expected = min(block_size, size - index * block_size) if size else 0
        if staged.get(bid) == expected:
            stats.blocks_reused += 1
            if on_progress is not None:
                on_progress(expected)
        else:
            todo.append(index)
    client = store.blob(region, name)
    lock = threading.Lock()

    def send(fd: int, index: int) -> None:
        offset = index * block_size
        data = os.pread(fd, min(block_size, size - offset), offset)
        client.stage_block(ids[index], data, length=len(data), validate_content=True)
        with lock:
            stats.blocks_sent += 1
            stats.bytes_sent += len(data)
        store.count(uploaded=len(data), blocks=1)
        if on_progress is not None:
            on_progress(len(data))

    def run() -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            _run_bounded(store, todo, lambda i: send(fd, i))
        finally:
            os.close(fd)
        client.commit_block_list([BlobBlock(block_id=b) for b in ids], metadata=dict(metadata))

    store.call(f"uploading {name}", region, run)
    return stats


def refresh_metadata(store: RegionalBlobStore, region: str, info: BlobInfo | None, metadata: Mapping[str, str]) -> None:
    """A skipped blob (same content) gets the metadata of this staging (e.g. a new signature digest)."""
    if info is None or info.metadata == dict(metadata):
        return
    blob = store.blob(region, info.name)
    store.call(f"updating the metadata of {info.name}", region, lambda: blob.set_blob_metadata(dict(metadata)))


def _run_bounded(store: RegionalBlobStore, items: list[int], work: Callable[[int], None]) -> None:
    """Run work(item) on up to max_concurrency threads with at most that many items in flight."""
    if not items:
        return
    with ThreadPoolExecutor(max_workers=store.max_concurrency, thread_name_prefix="blob-block") as pool:
        pending: set[Future[None]] = set()
        for item in items:
            if len(pending) >= store.max_concurrency:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for future in done:
                    future.result()
            pending.add(pool.submit(work, item))
        done, _ = wait(pending)
        for future in done:
            future.result()


def _uncommitted(store: RegionalBlobStore, region: str, name: str) -> dict[str, int]:
    def read() -> dict[str, int]:
        try:
            _, uncommitted = store.blob(region, name).get_block_list("uncommitted")
        except ResourceNotFoundError:
            return {}
        return {str(b.id): int(b.size) for b in uncommitted}

    return store.call(f"listing the staged blocks of {name}", region, read)
