"""Shared access signatures for blob storage: what a server-side copy reads with, and what a runtime image
fetches its weights with (a read+list SAS on the weights container, never the account key itself).

An account key is used when the region has one (a connection string or `account_key`), else a user
delegation key from the service (production, `DefaultAzureCredential`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING

from azure.storage.blob import BlobSasPermissions, ContainerSasPermissions, generate_blob_sas, generate_container_sas

if TYPE_CHECKING:
    from registry.blobs import RegionalBlobStore


def parse_connection_string(value: str) -> dict[str, str]:
    parts: dict[str, str] = {}
    for item in value.split(";"):
        if "=" in item:
            key, _, val = item.partition("=")
            parts[key.strip()] = val.strip()
    return parts


def account_key(store: RegionalBlobStore, region: str) -> str | None:
    """The region's account key when the settings hold one (directly or in the connection string)."""
    cfg = store.settings.regions[region]
    if cfg.account_key is not None:
        return cfg.account_key.get_secret_value()
    if cfg.connection_string is not None:
        return parse_connection_string(cfg.connection_string.get_secret_value()).get("AccountKey")
    return None


def _sign(store: RegionalBlobStore, region: str, valid_for: timedelta, generate: Callable[..., str]) -> str:
    """A SAS token from `generate(account, account_key=... | user_delegation_key=..., start=, expiry=)`."""
    service = store.service(region)
    account = service.account_name or store.settings.regions[region].account
    start, expiry = datetime.now(UTC) - timedelta(minutes=5), datetime.now(UTC) + valid_for
    key = account_key(store, region)
    if key is not None:
        return generate(account, account_key=key, start=start, expiry=expiry)
    delegation = store.call(
        "getting a user delegation key", region, lambda: service.get_user_delegation_key(start, expiry)
    )
    return generate(account, user_delegation_key=delegation, start=start, expiry=expiry)


def blob_read_url(store: RegionalBlobStore, region: str, name: str, *, valid_for: timedelta) -> str:
    """A read-only SAS URL for one blob."""
    generate = partial(
        generate_blob_sas,
        container_name=store.container_name,
        blob_name=name,
        permission=BlobSasPermissions(read=True),
    )
    return f"{store.blob(region, name).url}?{_sign(store, region, valid_for, generate)}"


def container_read_url(store: RegionalBlobStore, region: str, *, valid_for: timedelta) -> str:
    """The container URL of `region` with a read+list SAS (what runtime images fetch staged weights with)."""
    generate = partial(
        generate_container_sas,
        container_name=store.container_name,
        permission=ContainerSasPermissions(read=True, list=True),
    )
    return f"{store.container(region).url}?{_sign(store, region, valid_for, generate)}"
