"""Upstream runtime images: where each is read from, and the pin step that records its digest.

A runtime module declares each upstream reference once (`UpstreamImage.reference`: registry/repository:tag).
`pin_upstream` resolves that tag to its manifest digest through the OCI distribution API (`HEAD /v2/.../manifests/
<tag>`, with the registry's credentials and bearer-token challenge, registry/registry_auth.py), from the upstream
registry or from `images.upstream_mirror` (a registry serving the same repository paths), and
registry/runtimes/pins.py records it. Builds pull only `repository@digest`, never the tag: a tag moved after
pinning changes nothing until the next pin.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from registry.oci import ImageName, OciAuthError, OciClient, OciError, OciNotFoundError
from registry.runtimes import all_runtimes
from registry.runtimes.interface import Runtime, Upstream, UpstreamImage
from registry.runtimes.pins import DEFAULT_PINS_FILE, PinnedDigest, Pins, load_pins
from registry.schema import utcnow
from registry.settings import ImageSettings


class UpstreamUnreachableError(OciError):
    """The registry serving an upstream image did not answer (no route, DNS, TLS, timeout)."""


class UpstreamNotPinnedError(OciError):
    """An upstream image has no recorded digest, so it cannot be pulled."""


@dataclass(frozen=True)
class UpstreamSource:
    """One runtime's upstream image for one vendor: the declared reference and where it is read from."""

    runtime: str
    vendor: str
    image: UpstreamImage

    def source(self, mirror: str = "") -> ImageName:
        """The declared reference, or the same repository path and tag on `mirror`."""
        name = ImageName.parse(self.image.reference)
        return ImageName(mirror, name.repository, name.tag) if mirror else name

    def pinned_source(self, mirror: str = "") -> str:
        """`registry/repository@sha256:...` to pull; `UpstreamNotPinnedError` while no digest is recorded."""
        if self.image.digest is None:
            host = ImageName.parse(self.image.reference).registry
            raise UpstreamNotPinnedError(
                f"no pinned digest for {self.image.reference}: run `curate images pin --runtime {self.runtime}` on a "
                f"machine that reaches {mirror or host}"
            )
        return self.source(mirror).with_digest(self.image.digest)


def pins_path(images: ImageSettings) -> Path:
    return Path(images.pins_file) if images.pins_file else DEFAULT_PINS_FILE


def pinned_runtimes(images: ImageSettings) -> dict[str, Runtime]:
    """Every runtime with the digests of the policy's pins file."""
    return all_runtimes(load_pins(pins_path(images)))


def upstream_sources(runtime: Runtime) -> list[UpstreamSource]:
    """The upstream images of `runtime`, one per vendor (none for an image built here)."""
    if not isinstance(runtime.image, Upstream):
        return []
    return [UpstreamSource(runtime.name, vendor, image) for vendor, image in sorted(runtime.image.images.items())]


def resolve_digest(name: ImageName, images: ImageSettings, *, timeout: float = 30.0) -> str:
    """The manifest digest `name`'s tag points at now, read from its registry."""
    try:
        with OciClient.for_registry(name.registry, images, timeout=timeout) as oci:
            digest = oci.manifest_digest(name.repository, name.ref)
    except OciAuthError:
        raise
    except OciError as exc:
        if exc.__cause__ is None:
            raise
        raise UpstreamUnreachableError(
            f"upstream {name} unreachable: {type(exc.__cause__).__name__}; pin on a machine that reaches "
            f"{name.registry}, or set images.upstream_mirror to a registry that serves it"
        ) from exc
    if digest is None:
        raise OciNotFoundError(f"upstream {name} does not exist in {name.registry}: check the runtime's declared tag")
    return digest


def pin_upstream(upstream: UpstreamSource, images: ImageSettings) -> PinnedDigest:
    """Resolve one upstream reference (through the mirror when one is set) to the digest to record."""
    source = upstream.source(images.upstream_mirror)
    digest = resolve_digest(source, images)
    reference = upstream.image.reference
    return PinnedDigest(reference=reference, digest=digest, resolved_from=str(source), pinned_at=utcnow())


def recorded_pins(images: ImageSettings) -> Pins:
    return load_pins(pins_path(images))
