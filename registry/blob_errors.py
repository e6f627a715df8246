"""Blob storage errors: one branch of the registry hierarchy (`StorageError`), and how azure-core's map onto it."""

from __future__ import annotations

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)

from registry.errors import RegistryError


class StorageError(RegistryError):
    """Blob storage refused or failed a request; `retryable` says whether trying again later can help."""

    retryable = False

    def __init__(self, message: str, *, region: str | None = None) -> None:
        super().__init__(message)
        self.region = region


class StorageConfigError(StorageError):
    """A region is not configured well enough to reach its storage account."""


class StorageAuthError(StorageConfigError):
    """The storage account refused the credentials configured for a region."""


class StorageUnavailableError(StorageError):
    """The storage account could not be reached or answered 5xx/timeouts; retrying may help."""

    retryable = True


class BlobIntegrityError(StorageError):
    """A blob's content, size or metadata is not what was staged (tampered, truncated or half-copied)."""

    def __init__(self, message: str, *, region: str | None = None, blob_name: str | None = None) -> None:
        super().__init__(message, region=region)
        self.blob_name = blob_name


def translate(exc: AzureError, what: str, region: str | None) -> StorageError:
    """Map an azure-core error to the typed storage errors, with a message that says what to do."""
    where = f"region {region}" if region else "blob storage"
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return StorageUnavailableError(
            f"{what}: could not reach the storage account of {where} ({type(exc).__name__}); check that "
            "it is running and reachable (locally: `curate dev up`), then retry",
            region=region,
        )
    if isinstance(exc, ClientAuthenticationError):
        return StorageAuthError(
            f"{what}: {where} refused the credentials; check storage.regions.{region} (key/SAS/login)",
            region=region,
        )
    if isinstance(exc, HttpResponseError):
        status = exc.status_code or 0
        code = getattr(exc, "error_code", None) or ""
        if status >= 500 or status in (408, 429):
            return StorageUnavailableError(
                f"{what}: {where} answered HTTP {status} {code}; it is retried, then try again later",
                region=region,
            )
        return StorageError(f"{what}: {where} answered HTTP {status} {code}", region=region)
    return StorageUnavailableError(f"{what}: {where} failed: {type(exc).__name__}", region=region)
