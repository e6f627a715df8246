"""Image signatures as every consumer verifies them: the cosign "simple signing" format and `verify_image`.

The signature is a cosign "simple signing" payload
`{"critical": {"identity": {"docker-reference": REPO}, "image": {"docker-manifest-digest": DIGEST},
"type": "cosign container image signature"}, "optional": {...}}` signed with the pipeline's EC P-256 key
(ECDSA over SHA-256, DER, base64 in the layer annotation `dev.cosignproject.cosign/signature`), stored as an
OCI artifact referring to the image under cosign's tag `sha256-<hex>.sig` (see registry/oci.py). Images are
signed by the builders (builders/signing.py); the validation cells, the publisher and consumers (`curate
verify`, validators/verification.py) verify them here, at the bottom layer every package may read.

`verify_image` fails (raises `ImageVerificationError`) when the tag points at another digest than expected,
when no signature is attached, when the payload names another digest or repository, or when the signature was
made with another key.
"""

from __future__ import annotations

import base64
import binascii
import json

from cryptography.hazmat.primitives.asymmetric import ec

from registry.errors import RegistryError
from registry.keys import key_id, verify_signature
from registry.oci import ImageName, OciClient, OciError

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
PAYLOAD_TYPE = "cosign container image signature"


class ImageVerificationError(RegistryError):
    """An image signature is missing, over another digest, or made with another key: do not use the image."""


def simple_signing_payload(repository: str, digest: str, optional: dict[str, str] | None = None) -> bytes:
    payload = {
        "critical": {
            "identity": {"docker-reference": repository},
            "image": {"docker-manifest-digest": digest},
            "type": PAYLOAD_TYPE,
        },
        "optional": optional or {},
    }
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def repository_of(name: ImageName) -> str:
    return f"{name.registry}/{name.repository}"


def _resolve(oci: OciClient, name: ImageName, expected_digest: str | None) -> str:
    if name.digest:
        digest = name.digest
        if oci.manifest_digest(name.repository, digest) is None:
            raise ImageVerificationError(f"{name} is not in the registry")
    else:
        found = oci.manifest_digest(name.repository, name.ref)
        if found is None:
            raise ImageVerificationError(f"{name} is not in the registry")
        digest = found
    if expected_digest is not None and digest != expected_digest:
        raise ImageVerificationError(
            f"{name} points at {digest}, but {expected_digest} was signed and recorded: the tag was moved "
            "(tampered or rebuilt); use the pinned reference or rebuild and re-sign"
        )
    return digest


def _check_layer(
    oci: OciClient,
    name: ImageName,
    digest: str,
    layer: dict[str, object],
    public_key: ec.EllipticCurvePublicKey,
) -> str | None:
    """None when this signature layer verifies, else why not."""
    if layer.get("mediaType") != SIMPLE_SIGNING:
        return "not a simple-signing layer"
    annotations = layer.get("annotations")
    encoded = annotations.get(SIGNATURE_ANNOTATION) if isinstance(annotations, dict) else None
    if not isinstance(encoded, str):
        return "no signature annotation"
    payload = oci.get_blob(name.repository, str(layer.get("digest")), max_bytes=1024 * 1024)
    try:
        critical = json.loads(payload)["critical"]
        signed_digest = critical["image"]["docker-manifest-digest"]
        identity = critical["identity"]["docker-reference"]
        kind = critical["type"]
    except (ValueError, KeyError, TypeError):
        return "payload is not a simple-signing document"
    if kind != PAYLOAD_TYPE:
        return f"payload type is {kind!r}"
    if signed_digest != digest:
        return f"signature is over {signed_digest}, not {digest}"
    if identity != repository_of(name):
        return f"signature names {identity}, not {repository_of(name)}"
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return "signature is not base64"
    if not verify_signature(public_key, raw, payload):
        return "signature does not verify with this key (signed with another key, or altered)"
    return None


def verify_image(reference: str, public_key: ec.EllipticCurvePublicKey, *, expected_digest: str | None = None) -> str:
    """Verify the image's signature; returns the verified digest. Raises `ImageVerificationError` otherwise."""
    name = ImageName.parse(reference)
    try:
        with OciClient.for_registry(name.registry) as oci:
            digest = _resolve(oci, name, expected_digest)
            manifest = oci.attached(name.repository, digest, "sig")
            if manifest is None:
                raise ImageVerificationError(
                    f"{repository_of(name)}@{digest} has no signature: sign it before using it"
                )
            layers = manifest.json().get("layers") or []
            reasons = []
            for layer in layers if isinstance(layers, list) else []:
                problem = _check_layer(oci, name, digest, layer, public_key)
                if problem is None:
                    return digest
                reasons.append(problem)
    except OciError as exc:
        raise ImageVerificationError(f"cannot verify {reference}: {exc}") from exc
    raise ImageVerificationError(
        f"no valid signature for {repository_of(name)}@{digest} with key {key_id(public_key)[:16]}: "
        + "; ".join(reasons)
    )
