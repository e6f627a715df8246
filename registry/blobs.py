"""Regional blob storage for staged weights: one Azure storage account per region (azure-storage-blob).

Layout per model, in every region: `<container>/<org>/<name>/<revision>/<file>`, plus, next to the files, each
weights signature named by its own sha256 (`curation.signatures/<sha256>.sig`), the manifest of each signature
(`curation.manifests/<sha256>.json`) and the latest manifest (`curation.manifest.json`), written last. Signatures
and their manifests are never overwritten: a re-staging adds new ones, so what a live entry names stays put.

Uploads are resumable, idempotent block uploads with bounded memory (registry/blob_upload.py). Other regions
are filled by server-side copy (`start_copy_from_url` with a read-only SAS on the source blob,
registry/blob_sas.py), so the worker reads the source once however many regions there are. Errors are typed
(registry/blob_errors.py).

Credentials per region (settings `storage.regions.<name>`): a connection string (Azurite, keys), or an
`account_url` with `account_key`, or an `account_url` alone with `DefaultAzureCredential` (production).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.identity import DefaultAzureCredential
from azure.storage.blob import BlobClient, BlobServiceClient, ContainerClient, ExponentialRetry
from pydantic import BaseModel, ConfigDict, Field

from registry.blob_errors import (
    BlobIntegrityError,
    StorageConfigError,
    StorageError,
    StorageUnavailableError,
    translate,
)
from registry.blob_sas import blob_read_url
from registry.blob_upload import UploadStats, holds_content, refresh_metadata, upload_file
from registry.schema import ModelRef, Signature, StagedFile
from registry.settings import RegionSettings, StorageSettings

T = TypeVar("T")

MANIFEST_NAME = "curation.manifest.json"
SIGNATURE_NAME = "curation.sig"  # before issue 16: one signature per prefix, overwritten by every staging
SIGNATURES_DIR = "curation.signatures/"
MANIFESTS_DIR = "curation.manifests/"
RESERVED_NAMES = frozenset({MANIFEST_NAME, SIGNATURE_NAME})
_GET_CHUNK = 4 * 1024 * 1024  # streamed reads (verification) hold at most this much per blob


@dataclass(frozen=True)
class BlobInfo:
    name: str
    size: int
    metadata: dict[str, str]
    copy_status: str | None = None


@dataclass
class TransferCounters:
    """Byte accounting across a store's lifetime (thread-safe), for the benchmark and the flow's artifacts."""

    bytes_uploaded: int = 0
    bytes_downloaded: int = 0
    blocks_sent: int = 0
    copies_started: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, *, uploaded: int = 0, downloaded: int = 0, blocks: int = 0, copies: int = 0) -> None:
        with self._lock:
            self.bytes_uploaded += uploaded
            self.bytes_downloaded += downloaded
            self.blocks_sent += blocks
            self.copies_started += copies


class WeightsManifest(BaseModel):
    """`curation.manifest.json`: what a complete staging of one revision holds; written last per region."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    repo_id: str
    revision: str
    files: tuple[StagedFile, ...]
    signature: Signature
    region: str
    staged_at: datetime
    derived_from: str = Field(
        default="", description="a derived file's: the signature digest of the staged weights it was derived from"
    )
    quantization: str = Field(default="", description="a derived GGUF's llama.cpp file type")

    def to_bytes(self) -> bytes:
        return self.model_dump_json(indent=2).encode()


PROCESS_COUNTERS = TransferCounters()
"""Every store's transfers in this process (benchmarks read it; a flow's tasks each make their own store)."""


def model_prefix(ref: ModelRef) -> str:
    """`<org>/<name>/<revision>/`: where one pinned model lives inside the container."""
    return f"{ref.org}/{ref.name}/{ref.revision}/"


def derived_prefix(ref: ModelRef, quantization: str) -> str:
    """`<org>/<name>/<revision>.gguf/<quantization>/`: one GGUF file derived from the staged weights (flows/derive.py).
    A sibling of `model_prefix`, never inside it, so the source prefix keeps exactly the file set it signed."""
    return f"{ref.org}/{ref.name}/{ref.revision}.gguf/{quantization}/"


def derived_gguf_name(ref: ModelRef, quantization: str) -> str:
    """`<name>-<quantization>.gguf`: the file a derived GGUF is staged as (and a llama.cpp cell's MODEL_FILE)."""
    return f"{ref.name}-{quantization}.gguf"


def derived_quantization(ref: ModelRef, file_name: str) -> str | None:
    """The quantization of a GGUF named by `derived_gguf_name` (None: not such a name)."""
    head, tail = f"{ref.name}-", ".gguf"
    quantization = file_name[len(head) : -len(tail)] if file_name.startswith(head) and file_name.endswith(tail) else ""
    return quantization if quantization and "/" not in quantization else None


def derived_file_prefix(ref: ModelRef, file_name: str) -> str | None:
    """The derived prefix a GGUF named by `derived_gguf_name` lives under (None: not such a name)."""
    quantization = derived_quantization(ref, file_name)
    return derived_prefix(ref, quantization) if quantization is not None else None


def _hex(digest: str) -> str:
    return digest.removeprefix("sha256:")


def signature_blob_name(signature: Signature) -> str:
    """Where a weights signature lives under its model prefix: named by its own sha256, so a re-staging (whose
    randomised ECDSA signature always differs) adds a blob instead of replacing the one an entry names.
    Records made before issue 16 name the single `curation.sig`."""
    if signature.reference.endswith("/" + SIGNATURE_NAME):
        return SIGNATURE_NAME
    return f"{SIGNATURES_DIR}{_hex(signature.signature_digest)}.sig"


def signature_reference(container: str, ref: ModelRef, signature_digest: str) -> str:
    """The `Signature.reference` of a staged weights signature: `<container>/<prefix><signature blob>`."""
    return prefix_signature_reference(container, model_prefix(ref), signature_digest)


def prefix_signature_reference(container: str, prefix: str, signature_digest: str) -> str:
    """The `Signature.reference` of the signature of the files under `prefix` (staged or derived)."""
    return f"{container}/{prefix}{SIGNATURES_DIR}{_hex(signature_digest)}.sig"


def manifest_blob_name(signature: Signature) -> str:
    """The manifest written for one signature (never overwritten; `MANIFEST_NAME` is the latest one)."""
    if signature_blob_name(signature) == SIGNATURE_NAME:
        return MANIFEST_NAME
    return f"{MANIFESTS_DIR}{_hex(signature.signature_digest)}.json"


def is_reserved(name: str) -> bool:
    """Whether a name under a model prefix is the pipeline's own (signature, manifest), not a model file."""
    return name in RESERVED_NAMES or name.startswith((SIGNATURES_DIR, MANIFESTS_DIR))


class RegionalBlobStore:
    """The weights container in every configured region."""

    def __init__(
        self,
        storage: StorageSettings,
        *,
        regions: tuple[str, ...] | None = None,
        retry_total: int | None = None,
        initial_backoff: int = 1,
        timeout_s: float = 300.0,
        copy_timeout_s: float = 3600.0,
    ) -> None:
        self.settings = storage
        names = regions if regions is not None else tuple(storage.regions)
        unknown = [r for r in names if r not in storage.regions]
        if unknown:
            raise StorageConfigError(
                f"unknown region(s) {', '.join(unknown)}; configured: {', '.join(storage.regions) or 'none'}"
            )
        if not names:
            raise StorageConfigError("no storage regions configured; add [storage.regions.<name>] to curation.toml")
        primary = storage.primary_region if storage.primary_region in names else names[0]
        self.regions: tuple[str, ...] = (primary, *(r for r in names if r != primary))
        self.primary = primary
        self.container_name = storage.container
        self.block_size = storage.block_size
        self.max_concurrency = storage.max_concurrency
        self.counters = TransferCounters()
        self._retry_total = storage.retries if retry_total is None else retry_total
        self._initial_backoff = initial_backoff
        self._timeout_s = timeout_s
        self._copy_timeout_s = copy_timeout_s
        self._services: dict[str, BlobServiceClient] = {}
        self._lock = threading.Lock()
        self._containers_ready: set[str] = set()

    def count(self, *, uploaded: int = 0, downloaded: int = 0, blocks: int = 0, copies: int = 0) -> None:
        self.counters.add(uploaded=uploaded, downloaded=downloaded, blocks=blocks, copies=copies)
        PROCESS_COUNTERS.add(uploaded=uploaded, downloaded=downloaded, blocks=blocks, copies=copies)

    # ------------------------------------------------------------------------------------------ clients

    def service(self, region: str) -> BlobServiceClient:
        with self._lock:
            client = self._services.get(region)
            if client is None:
                client = self._make_service(region, self.settings.regions[region])
                self._services[region] = client
            return client

    def _make_service(self, region: str, cfg: RegionSettings) -> BlobServiceClient:
        options: dict[str, Any] = {
            "max_block_size": self.block_size,
            "max_single_put_size": self.block_size,
            "max_chunk_get_size": min(self.block_size, _GET_CHUNK),
            "max_single_get_size": min(self.block_size, _GET_CHUNK),
            "connection_timeout": min(self._timeout_s, 20.0),
            "read_timeout": self._timeout_s,
            "retry_policy": ExponentialRetry(
                initial_backoff=self._initial_backoff,
                increment_base=2,
                retry_total=self._retry_total,
                random_jitter_range=1,
            ),
        }
        if cfg.connection_string is not None:
            if "AccountName=" not in cfg.connection_string.get_secret_value():
                raise StorageConfigError(
                    f"the connection string of region {region} is malformed (no AccountName); fix "
                    f"CURATE_STORAGE__REGIONS__{region.upper()}__CONNECTION_STRING",
                    region=region,
                )
            return BlobServiceClient.from_connection_string(cfg.connection_string.get_secret_value(), **options)
        if cfg.account_url:
            credential: Any
            if cfg.account_key is not None:
                credential = {"account_name": cfg.account, "account_key": cfg.account_key.get_secret_value()}
            else:
                credential = DefaultAzureCredential()
            return BlobServiceClient(cfg.account_url, credential=credential, **options)
        raise StorageConfigError(
            f"region {region} has neither a connection string nor an account URL; set "
            f"CURATE_STORAGE__REGIONS__{region.upper()}__CONNECTION_STRING (locally: `curate dev up`) or "
            f"storage.regions.{region}.account_url",
            region=region,
        )

    def container(self, region: str) -> ContainerClient:
        return self.service(region).get_container_client(self.container_name)

    def blob(self, region: str, name: str) -> BlobClient:
        return self.container(region).get_blob_client(name)

    def blob_url(self, region: str, name: str = "") -> str:
        base = self.container(region).url.rstrip("/")
        return f"{base}/{name}" if name else f"{base}/"

    def call(self, what: str, region: str, fn: Callable[[], T]) -> T:
        """`fn()`, with azure-core's errors turned into the typed storage errors (registry/blob_errors.py)."""
        try:
            return fn()
        except StorageError:
            raise
        except AzureError as exc:
            raise translate(exc, what, region) from exc

    def ensure_container(self, region: str) -> None:
        if region in self._containers_ready:
            return

        def create() -> None:
            with contextlib.suppress(ResourceExistsError):
                self.container(region).create_container()

        self.call(f"creating container {self.container_name}", region, create)
        self._containers_ready.add(region)

    # ------------------------------------------------------------------------------------------ reads

    def properties(self, region: str, name: str) -> BlobInfo | None:
        def read() -> BlobInfo | None:
            try:
                props = self.blob(region, name).get_blob_properties()
            except ResourceNotFoundError:
                return None
            return BlobInfo(
                name=name,
                size=int(props.size),
                metadata=dict(props.metadata or {}),
                copy_status=props.copy.status if props.copy else None,
            )

        return self.call(f"reading properties of {name}", region, read)

    def list_names(self, region: str, prefix: str) -> list[str]:
        def read() -> list[str]:
            try:
                return sorted(str(b.name) for b in self.container(region).list_blobs(name_starts_with=prefix))
            except ResourceNotFoundError:
                return []

        return self.call(f"listing {prefix}", region, read)

    def iter_chunks(self, region: str, name: str) -> Iterator[bytes]:
        """The blob's content in chunks of at most block_size (never the whole blob in memory)."""
        try:
            downloader = self.blob(region, name).download_blob(max_concurrency=1)
            for chunk in downloader.chunks():
                self.count(downloaded=len(chunk))
                yield chunk
        except ResourceNotFoundError as exc:
            raise BlobIntegrityError(f"{name} is missing in region {region}", region=region) from exc
        except AzureError as exc:
            raise translate(exc, f"reading {name}", region) from exc

    def read_range(self, region: str, name: str, offset: int, length: int) -> bytes:
        """`length` bytes of the blob from `offset` (e.g. a safetensors header), in one ranged read."""

        def read() -> bytes:
            data: bytes = self.blob(region, name).download_blob(offset=offset, length=length).readall()
            return data

        data = self.call(f"reading {name}", region, read)
        self.count(downloaded=len(data))
        return data

    def sha256_of(self, region: str, name: str) -> tuple[str, int]:
        """Re-compute a blob's sha256 and size by streaming it."""
        digest = hashlib.sha256()
        size = 0
        for chunk in self.iter_chunks(region, name):
            digest.update(chunk)
            size += len(chunk)
        return digest.hexdigest(), size

    def get_bytes(self, region: str, name: str, *, max_bytes: int = 64 * 1024 * 1024) -> bytes:
        data = bytearray()
        for chunk in self.iter_chunks(region, name):
            data += chunk
            if len(data) > max_bytes:
                raise BlobIntegrityError(f"{name} in region {region} is larger than {max_bytes} bytes", region=region)
        return bytes(data)

    def download_to(self, region: str, name: str, path: Path) -> int:
        path.parent.mkdir(parents=True, exist_ok=True)
        size = 0
        with path.open("wb") as handle:
            for chunk in self.iter_chunks(region, name):
                handle.write(chunk)
                size += len(chunk)
        return size

    # ------------------------------------------------------------------------------------------ writes

    def put_bytes(self, region: str, name: str, data: bytes, *, metadata: Mapping[str, str] | None = None) -> None:
        self.ensure_container(region)

        def put() -> None:
            self.blob(region, name).upload_blob(data, overwrite=True, metadata=dict(metadata or {}))

        self.call(f"writing {name}", region, put)
        self.count(uploaded=len(data))

    def holds_bytes(self, region: str, name: str, data: bytes) -> bool:
        """Whether the blob exists and holds exactly `data` (read back and compared)."""
        info = self.properties(region, name)
        if info is None or info.size != len(data):
            return False
        try:
            return self.get_bytes(region, name, max_bytes=len(data)) == data
        except BlobIntegrityError:  # gone or grown since its properties were read
            return False

    def put_bytes_if_changed(
        self, region: str, name: str, data: bytes, *, metadata: Mapping[str, str] | None = None
    ) -> bool:
        """Write a small blob unless it already holds exactly `data` (read back and compared: neither its
        metadata nor its Content-MD5, which a writer can set, decides); returns whether it was written."""
        if self.holds_bytes(region, name, data):
            return False
        self.put_bytes(region, name, data, metadata=metadata)
        return True

    def delete(self, region: str, name: str) -> None:
        def remove() -> None:
            with contextlib.suppress(ResourceNotFoundError):
                self.blob(region, name).delete_blob()

        self.call(f"deleting {name}", region, remove)

    def upload_file(
        self,
        region: str,
        name: str,
        path: Path,
        *,
        sha256: str,
        metadata: Mapping[str, str],
        on_progress: Callable[[int], None] | None = None,
    ) -> UploadStats:
        """Block-upload `path` as `name` (resumable, idempotent; registry/blob_upload.py)."""
        return upload_file(self, region, name, path, sha256=sha256, metadata=metadata, on_progress=on_progress)

    # ------------------------------------------------------------------------------------------ copies

    def copy_blob(
        self,
        source_region: str,
        target_region: str,
        name: str,
        *,
        sha256: str,
        size: int,
        metadata: Mapping[str, str],
    ) -> bool:
        """Server-side copy of `name` between regions; False when the target already holds that content (its
        sha256 re-computed by reading it back, never its metadata)."""
        self.ensure_container(target_region)
        existing = self.properties(target_region, name)
        if holds_content(self, target_region, existing, sha256, size):
            refresh_metadata(self, target_region, existing, metadata)
            return False
        source_url = blob_read_url(self, source_region, name, valid_for=timedelta(hours=6))
        target = self.blob(target_region, name)
        self.call(
            f"starting the copy of {name} from {source_region}",
            target_region,
            lambda: target.start_copy_from_url(source_url, metadata=dict(metadata)),
        )
        self.count(copies=1)
        deadline = time.monotonic() + self._copy_timeout_s
        delay = 0.05
        while True:
            info = self.properties(target_region, name)
            status = info.copy_status if info is not None else None
            if status == "success":
                break
            if status in ("failed", "aborted") or info is None:
                raise StorageUnavailableError(
                    f"the server-side copy of {name} to region {target_region} ended {status or 'missing'}; "
                    "it is retried",
                    region=target_region,
                )
            if time.monotonic() > deadline:
                raise StorageUnavailableError(
                    f"the copy of {name} to region {target_region} did not finish in {self._copy_timeout_s:.0f}s",
                    region=target_region,
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
        if info is None or info.size != size:
            raise BlobIntegrityError(
                f"the copy of {name} in region {target_region} has {info.size if info else 0} bytes, expected {size}",
                region=target_region,
            )
        return True

    def close(self) -> None:
        with self._lock:
            for client in self._services.values():
                client.close()
            self._services.clear()

    def __enter__(self) -> RegionalBlobStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
