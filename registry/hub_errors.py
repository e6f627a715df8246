"""How the Hub's answers and the network's failures become the registry's typed Hub errors.

One decision lives here: what may get better by retrying. 429, 5xx, timeouts and dropped connections may
(`HubUnavailableError`, `HubRateLimitedError`); a refused connection, an unknown host or an unreachable network
will not within a run's patience (`HubUnreachableError`), nor will 401/403/404 or an answer this client cannot use.
"""

from __future__ import annotations

import errno
import socket

import httpx
import httpx2
from huggingface_hub import errors as hf_errors

from registry.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HubAuthError,
    HubError,
    HubRateLimitedError,
    HubResponseError,
    HubUnavailableError,
    HubUnreachableError,
    RepoNotFoundError,
    RevisionNotFoundError,
)

_FAIL_FAST_ERRNOS = frozenset({errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL})


def raise_for_response(response: httpx.Response, repo_id: str | None, path: str | None) -> None:
    if response.status_code < 400:
        return
    response.read()
    code = response.headers.get("X-Error-Code", "")
    message = response.headers.get("X-Error-Message", "") or response.text[:200]
    raise error_for_status(response.status_code, code, message, repo_id, path, response.headers.get("Retry-After"))


def error_for_status(
    status: int, code: str, message: str, repo_id: str | None, path: str | None, retry_after: str | None
) -> HubError:
    where = f"{repo_id or 'the Hub listing'}" + (f": {path}" if path else "")
    if code == "GatedRepo":
        return GatedRepoError(
            f"{where} is gated; set HF_TOKEN to a token of an account that accepted its terms",
            repo_id=repo_id,
            status=status,
        )
    if code == "RepoNotFound" or (status == 404 and not path and not code and repo_id):
        return RepoNotFoundError(
            f"{where} was not found on the Hub (or it is private: set HF_TOKEN if you have access)",
            repo_id=repo_id,
            status=status,
        )
    if code == "RevisionNotFound":
        return RevisionNotFoundError(f"{where}: that revision does not exist", repo_id=repo_id, status=status)
    if code == "EntryNotFound" or (status == 404 and path):
        return EntryNotFoundError(f"{where} does not exist at that revision", repo_id=repo_id, status=status)
    if status == 429:
        return HubRateLimitedError(
            f"the Hub rate-limited requests for {where}; retry later or lower hub.concurrency",
            repo_id=repo_id,
            retry_after=_parse_retry_after(retry_after),
        )
    if status in (401, 403):
        return HubAuthError(
            f"the Hub refused access to {where} (HTTP {status}): check HF_TOKEN ({message[:120]})",
            repo_id=repo_id,
            status=status,
        )
    if status == 416:
        return HubResponseError(f"{where}: range outside the file", repo_id=repo_id, status=status)
    if status >= 500:
        return HubUnavailableError(
            f"the Hub failed on {where} (HTTP {status}); it is retried, then try again later",
            repo_id=repo_id,
            status=status,
        )
    return HubResponseError(
        f"unexpected HTTP {status} from the Hub for {where}: {message[:120]}; is hub.endpoint a Hub?",
        repo_id=repo_id,
        status=status,
    )


def _parse_retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def fails_fast(exc: BaseException) -> bool:
    """A refused connection, an unknown host or no route: retrying within a run will not help."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, socket.gaierror):
            return True
        if isinstance(current, OSError) and current.errno in _FAIL_FAST_ERRNOS:
            return True
        current = current.__cause__ or current.__context__
    return False


def translate_error(exc: BaseException, repo_id: str | None, endpoint: str) -> HubError:
    """Map a huggingface_hub / httpx exception to the registry's typed Hub errors."""
    where = repo_id or "the Hub listing"
    if isinstance(exc, hf_errors.GatedRepoError):
        return error_for_status(_status(exc) or 403, "GatedRepo", "", repo_id, None, None)
    if isinstance(exc, hf_errors.RepositoryNotFoundError):
        return error_for_status(_status(exc) or 404, "RepoNotFound", "", repo_id, None, None)
    if isinstance(exc, hf_errors.RevisionNotFoundError):
        return error_for_status(404, "RevisionNotFound", "", repo_id, None, None)
    if isinstance(exc, hf_errors.RemoteEntryNotFoundError):
        return EntryNotFoundError(f"{where}: file not found at that revision", repo_id=repo_id, status=404)
    if isinstance(exc, hf_errors.HfHubHTTPError):
        response = exc.response
        status = response.status_code if response is not None else 0
        headers = response.headers if response is not None else {}
        return error_for_status(
            status,
            headers.get("X-Error-Code", ""),
            str(exc).splitlines()[0],
            repo_id,
            None,
            headers.get("Retry-After"),
        )
    if fails_fast(exc):
        return HubUnreachableError(
            f"cannot reach the Hub at {endpoint} ({_reason(exc)}); check hub.endpoint / HF_ENDPOINT and the "
            "network (locally: `curate dev up`)",
            repo_id=repo_id,
        )
    if isinstance(exc, httpx.TimeoutException | httpx2.TimeoutException | TimeoutError):
        return HubUnavailableError(f"timed out talking to the Hub at {endpoint} about {where}", repo_id=repo_id)
    if isinstance(exc, httpx.HTTPError | httpx2.HTTPError | ConnectionError):
        return HubUnavailableError(f"lost the connection to the Hub at {endpoint} for {where}: {exc}", repo_id=repo_id)
    return HubUnavailableError(f"I/O error talking to the Hub at {endpoint} about {where}: {exc}", repo_id=repo_id)


def _reason(exc: BaseException) -> str:
    current: BaseException | None = exc
    while current is not None:
        if isinstance(current, socket.gaierror):
            return "unknown host"
        if isinstance(current, OSError) and current.errno in _FAIL_FAST_ERRNOS:
            return current.strerror or "connection failed"
        current = current.__cause__ or current.__context__
    return type(exc).__name__


def _status(exc: hf_errors.HfHubHTTPError) -> int | None:
    return exc.response.status_code if exc.response is not None else None
