"""Fetching the catalog through TUF (`tuf.ngclient`) from a pinned root: what `curate verify` and any client use.

    files = fetch_catalog_files(root_pem_or_json, "http://127.0.0.1:10000/eastus/catalog", cache_dir,
                                ["index.json", "entries/qwen--qwen3-0.6b.json"], query="<SAS>")

The client keeps the newest metadata it has verified in `cache_dir` (reuse it across runs: that is what lets it
refuse an older export served again). Every failure is a `CatalogTrustError` whose `kind` says what was detected:
`rollback` (metadata older than what the client already trusts), `freeze` (expired metadata), `target` (a file
whose length or sha256 is not the signed one), `signature` (metadata not signed by the keys the trusted root or its
delegations name), `missing` (no such target), `unavailable` (the container could not be read) or `invalid`.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from pathlib import Path

from tuf.api import exceptions
from tuf.api.metadata import Metadata, Signed, Targets
from tuf.ngclient import FetcherInterface, Updater
from tuf.ngclient.urllib3_fetcher import Urllib3Fetcher

from registry.artifacts import artifact_key
from registry.catalog_tuf import CATALOG_ROLE, METADATA_DIR, TARGETS_DIR
from registry.errors import RegistryError

_CHUNK = 1 << 16


class CatalogTrustError(RegistryError):
    """The catalog's TUF metadata or a target failed verification; `kind` names what was detected."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class QueryFetcher(FetcherInterface):
    """HTTP(S) with a query string (e.g. a read-only SAS) appended to every URL; `file://` URLs read local files
    (an export directory), a missing one answering 404 as a server would."""

    def __init__(self, query: str = "") -> None:
        self._query = query.lstrip("?")
        self._http = Urllib3Fetcher(app_user_agent="model-curation")

    def _fetch(self, url: str) -> Iterator[bytes]:
        if url.startswith("file://"):
            return self._local(Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path)))
        full = f"{url}{'&' if '?' in url else '?'}{self._query}" if self._query else url
        return self._http.fetch(full)

    @staticmethod
    def _local(path: Path) -> Iterator[bytes]:
        if not path.is_file():
            raise exceptions.DownloadHTTPError(f"{path} not found", 404)
        data = path.read_bytes()
        return iter([data[i : i + _CHUNK] for i in range(0, len(data), _CHUNK)] or [b""])


def _classify(exc: Exception) -> CatalogTrustError:
    text = str(exc)
    if isinstance(exc, exceptions.ExpiredMetadataError):
        return CatalogTrustError(
            "freeze",
            f"the catalog's metadata has expired ({text}): the repository is frozen or an old export is served; "
            "tell the catalog operators (the `refresh-catalog` deployment re-signs the timestamp daily)",
        )
    if isinstance(exc, exceptions.BadVersionNumberError):
        return CatalogTrustError(
            "rollback",
            f"the catalog serves metadata older than what this client already verified ({text}): an old export "
            "is being served again; do not use it, tell the catalog operators",
        )
    if isinstance(exc, exceptions.UnsignedMetadataError):
        return CatalogTrustError(
            "signature",
            f"the catalog's metadata is not signed by the keys the pinned root trusts ({text}); check --root",
        )
    if isinstance(exc, exceptions.LengthOrHashMismatchError | exceptions.DownloadLengthMismatchError):
        return CatalogTrustError("target", f"a catalog file does not match its signed length and sha256 ({text})")
    if isinstance(exc, exceptions.DownloadError):
        return CatalogTrustError(
            "unavailable", f"the catalog container could not be read ({text}); check the URL and access"
        )
    return CatalogTrustError("invalid", f"the catalog's TUF metadata is not valid ({type(exc).__name__}: {text})")


def cache_dir_for(data_dir: Path, base_url: str) -> Path:
    """Where a client keeps the metadata it trusts for one catalog location (keep it: rollback detection)."""
    parsed = urllib.parse.urlsplit(base_url)
    return data_dir / "tuf-client" / artifact_key(parsed.netloc, parsed.path)


def fetch_catalog_files(
    root: bytes, base_url: str, cache_dir: Path, paths: list[str], *, query: str = ""
) -> tuple[dict[str, bytes], dict[str, int]]:
    """Verify the catalog's metadata from the pinned `root` (root.json bytes) and download `paths` (targets,
    hash-checked). `base_url` is the catalog container (`.../catalog`) or a `file://` export directory. Returns
    the files and the trusted metadata versions (root, timestamp, snapshot, targets, catalog)."""
    base = base_url.rstrip("/")
    cache_dir.mkdir(parents=True, exist_ok=True)
    try:
        updater = Updater(
            metadata_dir=str(cache_dir),
            metadata_base_url=f"{base}/{METADATA_DIR}/",
            target_dir=str(cache_dir / "targets"),
            target_base_url=f"{base}/{TARGETS_DIR}/",
            fetcher=QueryFetcher(query),
            bootstrap=root,
        )
        updater.refresh()
        files: dict[str, bytes] = {}
        for path in paths:
            info = updater.get_targetinfo(path)
            if info is None:
                raise CatalogTrustError("missing", f"the catalog does not list {path}; check the entry id")
            files[path] = Path(updater.download_target(info)).read_bytes()
    except CatalogTrustError:
        raise
    except (exceptions.RepositoryError, exceptions.DownloadError, ValueError) as exc:
        raise _classify(exc) from exc
    return files, trusted_versions(cache_dir)


def _cached(cache_dir: Path, role: str) -> Signed:
    """A role's metadata as the client last verified and stored it (ngclient keeps `<role>.json`)."""
    return Metadata.from_bytes((cache_dir / f"{role}.json").read_bytes()).signed


def trusted_versions(cache_dir: Path) -> dict[str, int]:
    roles = ("root", "timestamp", "snapshot", "targets", CATALOG_ROLE)
    return {role: _cached(cache_dir, role).version for role in roles if (cache_dir / f"{role}.json").is_file()}


def delegated_catalog_key(cache_dir: Path) -> bytes:
    """The PEM public key the verified targets metadata delegates the catalog to (the pipeline's catalog key)."""
    targets = _cached(cache_dir, "targets")
    assert isinstance(targets, Targets)
    delegations = targets.delegations
    if delegations is None or delegations.roles is None or CATALOG_ROLE not in delegations.roles:
        raise CatalogTrustError("invalid", "the targets metadata delegates no catalog role")
    keyid = delegations.roles[CATALOG_ROLE].keyids[0]
    return str(delegations.keys[keyid].keyval["public"]).encode()
