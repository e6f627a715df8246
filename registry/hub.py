"""The Hub source: a small interface over `huggingface_hub`, with typed errors, retries and byte accounting.

Everything downstream of discovery works on a `ModelRef` (repo id + commit sha): `model_info` resolves a
branch to the sha once, and every later read passes that sha, so a push upstream mid-run changes nothing.
Retries: 429 (honouring Retry-After), 5xx, dropped connections and timeouts are retried with exponential backoff,
up to `hub.max_retries` and within `hub.deadline_s` for the whole call; a refused connection, an unknown host and
401/403/404 are not (they will not get better by waiting: registry/hub_errors.py decides). This is the only retry
layer: huggingface_hub's own retrying paths (the paged listing) are not used, and an error the source gave up on
is not retryable for its callers either.
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
from huggingface_hub import HfApi, ModelInfo, hf_hub_download, hf_hub_url
from huggingface_hub import errors as hf_errors
from pydantic import BaseModel, ConfigDict, Field

from registry.errors import HubError, HubRateLimitedError, HubResponseError
from registry.hub_errors import raise_for_response, translate_error
from registry.identifiers import InvalidIdentifierError, check_repo_file, check_repo_id, check_revision, shown
from registry.schema import ModelRef
from registry.settings import HubSettings

T = TypeVar("T")

# What discovery asks the listing for: everything the filters and the artifact table need, in one call.
LISTING_EXPAND = [
    "sha",
    "trendingScore",
    "likes",
    "downloads",
    "pipeline_tag",
    "library_name",
    "tags",
    "gated",
    "private",
    "safetensors",
    "cardData",
    "lastModified",
    "author",
    "createdAt",
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

    def check_reachable(self) -> None:
        """One small listing call, under the retry policy: raises the typed error when the endpoint is not a
        reachable Hub (a refused connection or an unknown host in well under a second)."""
        self._list_page(f"{self.endpoint}/api/models", {"limit": 1})

    def trending(self, limit: int, *, pipeline_tag: str | None = None) -> list[RepoInfo]:
        query = {"sort": "trendingScore", "limit": limit, "expand": LISTING_EXPAND}
        params: dict[str, Any] | None = query | ({"pipeline_tag": pipeline_tag} if pipeline_tag else {})
        found: list[RepoInfo] = []
        url: str | None = f"{self.endpoint}/api/models"
        while url is not None and len(found) < limit:
            items, url = self._list_page(url, params)
            params = None  # the next-page link carries the query
            found.extend(_listed(item) for item in items)
        return found[:limit]

    def _list_page(self, url: str, params: dict[str, Any] | None) -> tuple[list[dict[str, Any]], str | None]:
        """One page of the listing and the next page's URL (the `Link: rel="next"` header)."""

        def call() -> tuple[list[dict[str, Any]], str | None]:
            response = self._http.get(url, params=params, headers=self._auth_headers())
            raise_for_response(response, None, None)
            try:
                items = response.json()
            except ValueError as exc:
                not_json = f"{self.endpoint} did not answer the model listing with JSON; is it a Hub?"
                raise HubResponseError(not_json) from exc
            if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
                raise HubResponseError(f"{self.endpoint} did not answer the model listing with a list; is it a Hub?")
            following = response.links.get("next", {}).get("url")
            return items, following

        return self._with_retries(call, repo_id=None)

    def model_info(self, repo_id: str, revision: str | None = None) -> RepoInfo:
        check_repo_id(repo_id)
        if revision is not None:
            check_revision(revision)

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
        check_repo_file(path)

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
        headers = {**headers, **self._auth_headers()}

        def call() -> bytes:
            with self._http.stream("GET", url, headers=headers) as response:
                raise_for_response(response, ref.repo_id, path)
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

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    def _with_retries(self, call: Callable[[], T], *, repo_id: str | None) -> T:
        """`call()`, retried while its error is retryable, `hub.max_retries` allows and `hub.deadline_s` has room
        for the next wait; the error given up on is marked not retryable (no second retry layer above)."""
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                return call()
            except HubError as exc:
                error = exc
            except hf_errors.HFValidationError as exc:
                raise InvalidIdentifierError(f"the Hub client refused {shown(repo_id)}: {exc}") from exc
            except (hf_errors.HfHubHTTPError, httpx.HTTPError, httpx2.HTTPError, OSError) as exc:
                error = translate_error(exc, repo_id, self.endpoint)
            delay = self._delay(attempt + 1, error)
            spent = time.monotonic() - started
            exhausted = attempt >= self._settings.max_retries or spent + delay > self._settings.deadline_s
            if not error.retryable or exhausted:
                error.retryable = False
                raise error
            attempt += 1
            self._sleep(delay)

    def _delay(self, attempt: int, error: HubError) -> float:
        if isinstance(error, HubRateLimitedError) and error.retry_after is not None:
            return min(error.retry_after, self._settings.max_backoff_s)
        base = float(self._settings.backoff_s * (2 ** (attempt - 1)))
        jitter = 1.0 + random.random() * 0.1  # noqa: S311 (jitter, not cryptography)
        return min(base * jitter, self._settings.max_backoff_s)


def _listed(item: dict[str, Any]) -> RepoInfo:
    """One entry of the model listing (what `HfApi.list_models` would make of it)."""
    try:
        return _to_repo_info(ModelInfo(**{"siblings": None, **item}))  # type: ignore[no-untyped-call]
    except (TypeError, KeyError, ValueError) as exc:
        raise HubResponseError(f"the Hub listing has an entry this client cannot read ({exc}); is it a Hub?") from exc


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
