"""The Hub source: a small interface over `huggingface_hub`, with typed errors, retries and byte accounting.

Everything downstream of discovery works on a `ModelRef` (repo id + commit sha): `model_info` resolves a
branch to the sha once, and every later read passes that sha, so a push upstream mid-run changes nothing.
Retries: 429 (honouring Retry-After), 5xx, connection errors and timeouts are retried with exponential backoff
up to `hub.max_retries`; 401/403/404 are not (they will not get better by waiting).
"""

from __future__ import annotations

import abc
import os
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import httpx2
from huggingface_hub import HfApi, hf_hub_download, hf_hub_url
from huggingface_hub import errors as hf_errors
from pydantic import BaseModel, ConfigDict, Field

from registry.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HubAuthError,
    HubError,
    HubRateLimitedError,
    HubResponseError,
    HubUnavailableError,
    RepoNotFoundError,
    RevisionNotFoundError,
)
from registry.schema import ModelRef
from registry.settings import HubSettings

T = TypeVar("T")

# What discovery asks the listing for: everything the filters and the artifact table need, in one call.
LISTING_EXPAND = [
    "sha", "trendingScore", "likes", "downloads", "pipeline_tag", "library_name", "tags", "gated", "private",
    "safetensors", "cardData", "lastModified", "author", "createdAt",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RepoFile(_Frozen):
    """One file at one revision. `sha256` is the LFS oid (None for small git-stored files)."""

    path: str
    size: int | None = None
    sha256: str | None = None
    git_oid: str | None = None
    lfs: bool = False


class RepoInfo(_Frozen):
    """What the Hub says about a repository at one revision."""

    repo_id: str
    sha: str | None
    author: str | None = None
    pipeline_tag: str | None = None
    library_name: str | None = None
    tags: tuple[str, ...] = ()
    card_data: dict[str, Any] = Field(default_factory=dict)
    config: dict[str, Any] | None = None
    gated: bool | str = False
    private: bool = False
    disabled: bool = False
    likes: int = 0
    downloads: int = 0
    trending_score: float = 0.0
    last_modified: datetime | None = None
    created_at: datetime | None = None
    safetensors_parameters: dict[str, int] = Field(default_factory=dict)
    safetensors_total: int | None = None
    files: tuple[RepoFile, ...] = ()

    @property
    def license(self) -> str | None:
        value = self.card_data.get("license")
        if isinstance(value, list):
            return ",".join(str(v) for v in value)
        return str(value) if value is not None else None

    def ref(self) -> ModelRef:
        if not self.sha:
            raise HubResponseError(f"the Hub gave no commit sha for {self.repo_id}", repo_id=self.repo_id)
        return ModelRef(repo_id=self.repo_id, revision=self.sha)

    def file(self, path: str) -> RepoFile | None:
        return next((f for f in self.files if f.path == path), None)


class HubSource(abc.ABC):
    """Where candidates come from. One implementation talks to the Hub (or any Hub-compatible endpoint)."""

    @abc.abstractmethod
    def trending(self, limit: int, *, pipeline_tag: str | None = None) -> list[RepoInfo]:
        """The `limit` most trending models, best first."""

    @abc.abstractmethod
    def model_info(self, repo_id: str, revision: str | None = None) -> RepoInfo:
        """One repository at `revision` (default branch when None), with file sizes and LFS hashes."""

    @abc.abstractmethod
    def read_range(self, ref: ModelRef, path: str, start: int, length: int) -> bytes:
        """Bytes [start, start+length) of one file, by HTTP range; shorter only at end of file."""

    @abc.abstractmethod
    def read_file(self, ref: ModelRef, path: str, *, max_bytes: int) -> bytes:
        """A small file whole; raises HubResponseError when it is larger than `max_bytes`."""

    @abc.abstractmethod
    def download(self, ref: ModelRef, path: str, local_dir: Path) -> Path:
        """Download one file of the pinned revision into `local_dir`, returning its path."""

    @property
    @abc.abstractmethod
    def bytes_read(self) -> int:
        """Bytes of file content read so far by range/file reads (not downloads)."""


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


class HfHubSource(HubSource):
    """`huggingface_hub` against `settings.endpoint` (the Hub, or a Hub-compatible server)."""

    def __init__(self, settings: HubSettings, *, sleep: Callable[[float], None] = _sleep) -> None:
        self._settings = settings
        self._token = settings.token.get_secret_value() if settings.token else None
        self._api = HfApi(endpoint=settings.endpoint, token=self._token or False)
        self._sleep = sleep
        self._lock = threading.Lock()
        self._bytes_read = 0
        self._bytes_by_repo: dict[str, int] = defaultdict(int)
        self._http = httpx.Client(timeout=settings.timeout_s, follow_redirects=True)

    @property
    def endpoint(self) -> str:
        return self._settings.endpoint

    @property
    def has_token(self) -> bool:
        return self._token is not None

    @property
    def bytes_read(self) -> int:
        return self._bytes_read

    def bytes_read_for(self, repo_id: str) -> int:
        return self._bytes_by_repo.get(repo_id, 0)

    def close(self) -> None:
        self._http.close()

    # ------------------------------------------------------------------------------------------ calls

    def trending(self, limit: int, *, pipeline_tag: str | None = None) -> list[RepoInfo]:
        def call() -> list[RepoInfo]:
            models = self._api.list_models(
                sort="trending_score",
                limit=limit,
                pipeline_tag=pipeline_tag,
                expand=LISTING_EXPAND,  # type: ignore[arg-type]
            )
            return [_to_repo_info(m) for m in models]

        return self._with_retries(call, repo_id=None)

    def model_info(self, repo_id: str, revision: str | None = None) -> RepoInfo:
        def call() -> RepoInfo:
            info = self._api.model_info(
                repo_id, revision=revision, files_metadata=True, timeout=self._settings.timeout_s
            )
            return _to_repo_info(info)

        return self._with_retries(call, repo_id=repo_id)

    def read_range(self, ref: ModelRef, path: str, start: int, length: int) -> bytes:
        if start < 0 or length < 0:
            raise ValueError("range start and length must be >= 0")
        if length == 0:
            return b""
        data = self._get(ref, path, headers={"Range": f"bytes={start}-{start + length - 1}"}, limit=length)
        return data

    def read_file(self, ref: ModelRef, path: str, *, max_bytes: int) -> bytes:
        data = self._get(ref, path, headers={}, limit=max_bytes + 1)
        if len(data) > max_bytes:
            raise HubResponseError(
                f"{ref.repo_id}: {path} is larger than {max_bytes} bytes; it is not read whole",
                repo_id=ref.repo_id,
            )
        return data

    def download(self, ref: ModelRef, path: str, local_dir: Path) -> Path:
        def call() -> Path:
            result = hf_hub_download(
                ref.repo_id,
                path,
                revision=ref.revision,
                local_dir=local_dir,
                endpoint=self._settings.endpoint,
                token=self._token or False,
                etag_timeout=self._settings.timeout_s,
            )
            return Path(result)

        return self._with_retries(call, repo_id=ref.repo_id)

    # ------------------------------------------------------------------------------------------ plumbing

    def _get(self, ref: ModelRef, path: str, *, headers: dict[str, str], limit: int) -> bytes:
        url = hf_hub_url(ref.repo_id, path, revision=ref.revision, endpoint=self._settings.endpoint)
        if self._token:
            headers = {**headers, "Authorization": f"Bearer {self._token}"}

        def call() -> bytes:
            with self._http.stream("GET", url, headers=headers) as response:
                _raise_for_response(response, ref.repo_id, path)
                chunks: list[bytes] = []
                received = 0
                for chunk in response.iter_bytes():
                    chunks.append(chunk)
                    received += len(chunk)
                    if received >= limit:
                        break
            data = b"".join(chunks)[:limit]
            with self._lock:
                self._bytes_read += len(data)
                self._bytes_by_repo[ref.repo_id] += len(data)
            return data

        return self._with_retries(call, repo_id=ref.repo_id)

    def _with_retries(self, call: Callable[[], T], *, repo_id: str | None) -> T:
        attempt = 0
        while True:
            try:
                return call()
            except HubError as exc:
                error = exc
            except (hf_errors.HfHubHTTPError, httpx.HTTPError, httpx2.HTTPError, OSError) as exc:
                error = translate_error(exc, repo_id)
            if not error.retryable or attempt >= self._settings.max_retries:
                raise error
            attempt += 1
            self._sleep(self._delay(attempt, error))

    def _delay(self, attempt: int, error: HubError) -> float:
        if isinstance(error, HubRateLimitedError) and error.retry_after is not None:
            return min(error.retry_after, self._settings.max_backoff_s)
        base = float(self._settings.backoff_s * (2 ** (attempt - 1)))
        jitter = 1.0 + random.random() * 0.1  # noqa: S311 (jitter, not cryptography)
        return min(base * jitter, self._settings.max_backoff_s)


def _raise_for_response(response: httpx.Response, repo_id: str, path: str) -> None:
    if response.status_code < 400:
        return
    response.read()
    code = response.headers.get("X-Error-Code", "")
    message = response.headers.get("X-Error-Message", "") or response.text[:200]
    raise _error_for_status(response.status_code, code, message, repo_id, path, response.headers.get("Retry-After"))


def _error_for_status(
    status: int, code: str, message: str, repo_id: str | None, path: str | None, retry_after: str | None
) -> HubError:
    where = f"{repo_id}" + (f": {path}" if path else "")
    if code == "GatedRepo":
        return GatedRepoError(
            f"{where} is gated; set HF_TOKEN to a token of an account that accepted its terms",
            repo_id=repo_id, status=status,
        )
    if code == "RepoNotFound" or (status == 404 and not path and not code):
        return RepoNotFoundError(
            f"{where} was not found on the Hub (or it is private: set HF_TOKEN if you have access)",
            repo_id=repo_id, status=status,
        )
    if code == "RevisionNotFound":
        return RevisionNotFoundError(f"{where}: that revision does not exist", repo_id=repo_id, status=status)
    if code == "EntryNotFound" or status == 404:
        return EntryNotFoundError(f"{where} does not exist at that revision", repo_id=repo_id, status=status)
    if status == 429:
        return HubRateLimitedError(
            f"the Hub rate-limited requests for {where}; retry later or lower hub.concurrency",
            repo_id=repo_id, retry_after=_parse_retry_after(retry_after),
        )
    if status in (401, 403):
        return HubAuthError(
            f"the Hub refused access to {where} (HTTP {status}): check HF_TOKEN ({message})",
            repo_id=repo_id, status=status,
        )
    if status == 416:
        return HubResponseError(f"{where}: range outside the file", repo_id=repo_id, status=status)
    if status >= 500:
        return HubUnavailableError(
            f"the Hub failed on {where} (HTTP {status}); it is retried, then try again later",
            repo_id=repo_id, status=status,
        )
    return HubResponseError(
        f"unexpected HTTP {status} from the Hub for {where}: {message}", repo_id=repo_id, status=status
    )


def _parse_retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def translate_error(exc: BaseException, repo_id: str | None) -> HubError:
    """Map a huggingface_hub / httpx exception to the registry's typed Hub errors."""
    where = repo_id or "the Hub listing"
    if isinstance(exc, hf_errors.GatedRepoError):
        return GatedRepoError(
            f"{where} is gated; set HF_TOKEN to a token of an account that accepted its terms",
            repo_id=repo_id, status=_status(exc),
        )
    if isinstance(exc, hf_errors.RepositoryNotFoundError):
        return RepoNotFoundError(
            f"{where} was not found on the Hub (or it is private: set HF_TOKEN if you have access)",
            repo_id=repo_id, status=_status(exc),
        )
    if isinstance(exc, hf_errors.RevisionNotFoundError):
        return RevisionNotFoundError(f"{where}: that revision does not exist", repo_id=repo_id, status=404)
    if isinstance(exc, hf_errors.RemoteEntryNotFoundError):
        return EntryNotFoundError(f"{where}: file not found at that revision", repo_id=repo_id, status=404)
    if isinstance(exc, hf_errors.HfHubHTTPError):
        response = exc.response
        status = response.status_code if response is not None else 0
        headers = response.headers if response is not None else {}
        return _error_for_status(
            status, headers.get("X-Error-Code", ""), str(exc).splitlines()[0], repo_id, None,
            headers.get("Retry-After"),
        )
    if isinstance(exc, httpx.TimeoutException | httpx2.TimeoutException | TimeoutError):
        return HubUnavailableError(f"timed out talking to the Hub about {where}", repo_id=repo_id)
    if isinstance(exc, httpx.HTTPError | httpx2.HTTPError | ConnectionError):
        return HubUnavailableError(f"could not reach the Hub for {where}: {exc}", repo_id=repo_id)
    return HubUnavailableError(f"I/O error talking to the Hub about {where}: {exc}", repo_id=repo_id)


def _status(exc: hf_errors.HfHubHTTPError) -> int | None:
    return exc.response.status_code if exc.response is not None else None


def _to_repo_info(model: Any) -> RepoInfo:
    card = getattr(model, "card_data", None)
    card_dict: dict[str, Any] = card.to_dict() if card is not None and hasattr(card, "to_dict") else {}
    safetensors = getattr(model, "safetensors", None)
    files = tuple(_to_repo_file(s) for s in (getattr(model, "siblings", None) or ()))
    return RepoInfo(
        repo_id=model.id,
        sha=getattr(model, "sha", None),
        author=getattr(model, "author", None),
        pipeline_tag=getattr(model, "pipeline_tag", None),
        library_name=getattr(model, "library_name", None),
        tags=tuple(getattr(model, "tags", None) or ()),
        card_data=card_dict,
        config=getattr(model, "config", None),
        gated=getattr(model, "gated", None) or False,
        private=bool(getattr(model, "private", False)),
        disabled=bool(getattr(model, "disabled", False)),
        likes=int(getattr(model, "likes", 0) or 0),
        downloads=int(getattr(model, "downloads", 0) or 0),
        trending_score=float(getattr(model, "trending_score", 0) or 0),
        last_modified=getattr(model, "last_modified", None),
        created_at=getattr(model, "created_at", None),
        safetensors_parameters=dict(safetensors.parameters) if safetensors is not None else {},
        safetensors_total=int(safetensors.total) if safetensors is not None else None,
        files=files,
    )


def _to_repo_file(sibling: Any) -> RepoFile:
    lfs = getattr(sibling, "lfs", None)
    return RepoFile(
        path=sibling.rfilename,
        size=getattr(sibling, "size", None),
        sha256=getattr(lfs, "sha256", None) if lfs is not None else None,
        git_oid=getattr(sibling, "blob_id", None),
        lfs=lfs is not None,
    )


def iter_files(info: RepoInfo, suffix: str = "") -> Iterator[RepoFile]:
    return (f for f in info.files if f.path.endswith(suffix))


def hub_source(settings: HubSettings) -> HfHubSource:
    """The Hub source for these settings (HF_ENDPOINT / HF_TOKEN already folded into them)."""
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    return HfHubSource(settings)
