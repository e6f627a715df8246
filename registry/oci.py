"""A small OCI distribution client (plain HTTP API): manifests, blobs, tags, artifacts attached to images.

Artifacts (signatures, SBOMs, scan reports) are OCI image manifests that carry a `subject` pointing at the
image (OCI 1.1 referrers) AND are tagged with cosign's scheme `sha256-<hex>.<suffix>` in the image's
repository, because the CNCF distribution 2.8 registry used locally has no referrers API: the tag scheme works
on every registry, the subject lets newer registries list them as referrers too.

Loopback registries (127.0.0.1, localhost) are spoken to over http; anything else over https. Registries that
need credentials are answered by registry/registry_auth.py (basic, or the bearer-token challenge) with the
credentials registry/credentials.py finds for them: `OciClient.for_registry(registry)`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import httpx

from registry.credentials import SET_CREDENTIALS, RegistryAuthError, RegistryCredentials, registry_credentials
from registry.errors import RegistryError
from registry.registry_auth import RegistryAuth, is_loopback
from registry.settings import ImageSettings

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)
_MAX_MANIFEST = 4 * 1024 * 1024


class OciError(RegistryError):
    """A registry call failed; the message names the registry, repository and reference."""


class OciNotFoundError(OciError):
    """The manifest, tag or blob does not exist in the registry."""


class OciAuthError(OciError, RegistryAuthError):
    """The registry refused the request (401/403): credentials missing, wrong, or without that permission."""


@dataclass(frozen=True)
class ImageName:
    """`registry/repository` with a tag and/or a digest."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, reference: str) -> ImageName:
        rest, _, digest = reference.partition("@")
        registry, slash, path = rest.partition("/")
        if not slash or ("." not in registry and ":" not in registry and registry != "localhost"):
            raise OciError(f"image reference {reference!r} must name its registry (host[:port]/repository)")
        tag = None
        last = path.rsplit("/", 1)[-1]
        if ":" in last:
            path, _, tag = path.rpartition(":")
        if not path:
            raise OciError(f"image reference {reference!r} has no repository")
        if digest and not digest.startswith("sha256:"):
            raise OciError(f"image reference {reference!r}: only sha256 digests are supported")
        return cls(registry=registry, repository=path, tag=tag or None, digest=digest or None)

    @property
    def ref(self) -> str:
        """The tag or digest to ask the registry for (digest wins)."""
        value = self.digest or self.tag
        if value is None:
            raise OciError(f"{self.registry}/{self.repository} has neither a tag nor a digest")
        return value

    def with_tag(self, tag: str) -> str:
        return f"{self.registry}/{self.repository}:{tag}"

    def with_digest(self, digest: str) -> str:
        return f"{self.registry}/{self.repository}@{digest}"

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


@dataclass(frozen=True)
class Manifest:
    digest: str
    media_type: str
    body: bytes

    def json(self) -> dict[str, Any]:
        data = json.loads(self.body)
        if not isinstance(data, dict):
            raise OciError(f"manifest {self.digest} is not a JSON object")
        return data


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def attached_tag(subject_digest: str, suffix: str) -> str:
    """cosign's tag for things attached to an image: `sha256-<hex>.<suffix>` (sig, sbom, ...)."""
    algorithm, _, hexdigest = subject_digest.partition(":")
    if algorithm != "sha256" or len(hexdigest) != 64:
        raise OciError(f"not a sha256 digest: {subject_digest!r}")
    return f"sha256-{hexdigest}.{suffix}"


class OciClient:
    """One registry, anonymous unless `credentials` are given (`for_registry` finds the configured ones)."""

    def __init__(
        self, registry: str, *, timeout: float = 120.0, credentials: RegistryCredentials | None = None
    ) -> None:
        scheme = "http" if is_loopback(registry) else "https"
        self.registry = registry
        self.credentials = credentials
        self.auth = RegistryAuth(registry, credentials, timeout=min(timeout, 60.0))
        self._http = httpx.Client(base_url=f"{scheme}://{registry}", timeout=timeout, auth=self.auth)

    @classmethod
    def for_registry(cls, registry: str, images: ImageSettings | None = None, *, timeout: float = 120.0) -> OciClient:
        """A client with the credentials configured for `registry` (settings, else Docker config, else none)."""
        try:
            credentials = registry_credentials(registry, images)
        except RegistryAuthError as exc:
            raise OciAuthError(str(exc)) from exc
        return cls(registry, timeout=timeout, credentials=credentials)

    def close(self) -> None:
        self._http.close()
        self.auth.close()

    def __enter__(self) -> OciClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ping(self) -> None:
        """`GET /v2/`: the registry answers, and takes the credentials when it asks for some (else typed errors)."""
        self._check(self._request("GET", "/v2/"), "the registry API check (GET /v2/)")

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise OciError(
                f"registry {self.registry} is unreachable ({type(exc).__name__}); start it (`curate dev up`)"
            ) from exc
        except RegistryAuthError as exc:  # from the token service (registry_auth.py)
            if isinstance(exc, OciError):
                raise
            raise OciAuthError(str(exc)) from exc

    def _check(self, response: httpx.Response, what: str) -> None:
        if response.status_code == 404:
            raise OciNotFoundError(f"{what}: not found in {self.registry}")
        if response.status_code in (401, 403):
            raise OciAuthError(self._refused(response.status_code, what))
        if response.status_code >= 400:
            raise OciError(f"{what}: {self.registry} answered HTTP {response.status_code}: {response.text[:300]}")

    def _refused(self, status: int, what: str) -> str:
        if self.credentials is None:
            return f"{what}: registry {self.registry} needs credentials (HTTP {status}): {SET_CREDENTIALS}"
        if status == 403:
            return (
                f"{what}: registry {self.registry} denied it to {self.credentials.describe()} (HTTP 403): "
                "grant that account pull and push on the repository, or use another account"
            )
        return (
            f"{what}: registry {self.registry} refused {self.credentials.describe()} (HTTP 401): "
            f"{self.credentials.remedy()}"
        )

    # ---------------------------------------------------------------------------------------- manifests

    def manifest_digest(self, repository: str, reference: str) -> str | None:
        """The digest a tag (or digest) resolves to now, or None when it does not exist."""
        response = self._request(
            "HEAD", f"/v2/{repository}/manifests/{reference}", headers={"Accept": ", ".join(MANIFEST_TYPES)}
        )
        if response.status_code == 404:
            return None
        self._check(response, f"HEAD {repository}:{reference}")
        digest = response.headers.get("Docker-Content-Digest")
        if digest:
            return str(digest)
        return self.get_manifest(repository, reference).digest

    def get_manifest(self, repository: str, reference: str) -> Manifest:
        response = self._request(
            "GET", f"/v2/{repository}/manifests/{reference}", headers={"Accept": ", ".join(MANIFEST_TYPES)}
        )
        self._check(response, f"manifest {repository}:{reference}")
        body = response.content
        if len(body) > _MAX_MANIFEST:
            raise OciError(f"manifest {repository}:{reference} is larger than {_MAX_MANIFEST} bytes")
        digest = sha256_digest(body)
        if reference.startswith("sha256:") and digest != reference:
            raise OciError(f"manifest {repository}@{reference} came back with digest {digest}: the registry lies")
        media_type = response.headers.get("Content-Type", "").split(";")[0] or str(
            json.loads(body).get("mediaType", OCI_MANIFEST)
        )
        return Manifest(digest=digest, media_type=media_type, body=body)

    def put_manifest(self, repository: str, reference: str, body: bytes, media_type: str = OCI_MANIFEST) -> str:
        response = self._request(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            content=body,
            headers={"Content-Type": media_type},
        )
        self._check(response, f"PUT manifest {repository}:{reference}")
        return response.headers.get("Docker-Content-Digest") or sha256_digest(body)

    def tags(self, repository: str) -> list[str]:
        response = self._request("GET", f"/v2/{repository}/tags/list")
        if response.status_code == 404:
            return []
        self._check(response, f"tags of {repository}")
        tags = response.json().get("tags") or []
        return sorted(str(t) for t in tags)

    def repositories(self) -> list[str]:
        response = self._request("GET", "/v2/_catalog")
        self._check(response, "catalog")
        return sorted(str(r) for r in response.json().get("repositories") or [])

    # ---------------------------------------------------------------------------------------- blobs

    def blob_exists(self, repository: str, digest: str) -> bool:
        response = self._request("HEAD", f"/v2/{repository}/blobs/{digest}")
        if response.status_code == 404:
            return False
        self._check(response, f"HEAD blob {repository}@{digest}")
        return response.status_code == 200

    def push_blob(self, repository: str, data: bytes) -> str:
        digest = sha256_digest(data)
        if self.blob_exists(repository, digest):
            return digest
        start = self._request("POST", f"/v2/{repository}/blobs/uploads/")
        self._check(start, f"start blob upload to {repository}")
        location = start.headers.get("Location")
        if not location:
            raise OciError(f"registry {self.registry} gave no upload location for {repository}")
        separator = "&" if "?" in location else "?"
        done = self._request(
            "PUT",
            f"{location}{separator}digest={digest}",
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        self._check(done, f"upload blob {digest} to {repository}")
        return digest

    def get_blob(self, repository: str, digest: str, *, max_bytes: int = 256 * 1024 * 1024) -> bytes:
        response = self._request("GET", f"/v2/{repository}/blobs/{digest}", follow_redirects=True)
        self._check(response, f"blob {repository}@{digest}")
        data = response.content
        if len(data) > max_bytes:
            raise OciError(f"blob {digest} is larger than {max_bytes} bytes")
        if sha256_digest(data) != digest:
            raise OciError(f"blob {repository}@{digest} does not match its digest: the registry copy is corrupt")
        return data

    # ---------------------------------------------------------------------------------------- artifacts

    def attach(
        self,
        repository: str,
        subject: Manifest,
        *,
        suffix: str,
        artifact_type: str,
        layers: list[tuple[bytes, str, dict[str, str]]],
        annotations: dict[str, str] | None = None,
    ) -> tuple[str, str]:
        """Store an artifact referring to `subject`; returns (manifest digest, tag), replacing an older one.

        `layers` are (payload, media type, annotations). The config is an OCI image config (what cosign
        writes), so registries without OCI 1.1 artifact support accept it.
        """
        config = json.dumps(
            {"architecture": "", "os": "", "config": {}, "rootfs": {"type": "layers", "diff_ids": []}},
            separators=(",", ":"),
        ).encode()
        config_digest = self.push_blob(repository, config)
        descriptors = []
        for payload, media_type, layer_annotations in layers:
            digest = self.push_blob(repository, payload)
            descriptor: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": len(payload)}
            if layer_annotations:
                descriptor["annotations"] = layer_annotations
            descriptors.append(descriptor)
        manifest: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": descriptors,
            "subject": {"mediaType": subject.media_type, "digest": subject.digest, "size": len(subject.body)},
        }
        if annotations:
            manifest["annotations"] = annotations
        body = json.dumps(manifest, separators=(",", ":"), sort_keys=True).encode()
        tag = attached_tag(subject.digest, suffix)
        digest = self.put_manifest(repository, tag, body, OCI_MANIFEST)
        return digest, tag

    def attached(self, repository: str, subject_digest: str, suffix: str) -> Manifest | None:
        """The artifact attached to `subject_digest` under `suffix`, or None."""
        try:
            return self.get_manifest(repository, attached_tag(subject_digest, suffix))
        except OciNotFoundError:
            return None
