"""The registry package's errors: one hierarchy rooted at `RegistryError`, messages that say what to do."""

from __future__ import annotations


class RegistryError(Exception):
    """Root of every error raised by the registry package."""


class HubError(RegistryError):
    """A Hub call failed. `retryable` tells the caller whether trying again later can help; it is false as well
    once the Hub source has spent its own retries and `hub.deadline_s` (one retry layer per call)."""

    retryable = False

    def __init__(self, message: str, *, repo_id: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.repo_id = repo_id
        self.status = status


class RepoNotFoundError(HubError):
    """The repository does not exist (or is private and no valid token was sent)."""


class RevisionNotFoundError(HubError):
    """The repository exists but not at that revision."""


class EntryNotFoundError(HubError):
    """The file does not exist at that revision."""


class GatedRepoError(HubError):
    """The repository is gated: a token of an account that accepted its terms is needed."""


class HubAuthError(HubError):
    """The token was refused (401/403): check HF_TOKEN."""


class HubRateLimitedError(HubError):
    """429: the Hub asked us to slow down; `retry_after` is what it asked for, in seconds."""

    retryable = True

    def __init__(self, message: str, *, repo_id: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, repo_id=repo_id, status=429)
        self.retry_after = retry_after


class HubUnavailableError(HubError):
    """5xx, dropped connections and timeouts: the Hub (or the network) failed; retrying may help."""

    retryable = True


class HubUnreachableError(HubUnavailableError):
    """The connection was refused, the host is unknown or there is no route: not retried (it fails in seconds)."""

    retryable = False


class HubResponseError(HubError):
    """The Hub answered something this client cannot use (bad JSON, a short range read)."""


class CatalogError(RegistryError):
    """The catalog store cannot do what was asked (unreachable database, unknown id, unreadable row)."""


class CatalogNotFoundError(CatalogError):
    """The catalog has no run, entry or image by that id."""
