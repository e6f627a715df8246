"""Sign runtime images over their manifest digest (cosign-compatible), verify them, attach SBOMs and reports.

The signature is a cosign "simple signing" payload
`{"critical": {"identity": {"docker-reference": REPO}, "image": {"docker-manifest-digest": DIGEST},
"type": "cosign container image signature"}, "optional": {...}}` signed with the pipeline's EC P-256 key
(ECDSA over SHA-256, DER, base64 in the layer annotation `dev.cosignproject.cosign/signature`), stored as an
OCI artifact referring to the image under cosign's tag `sha256-<hex>.sig` (see registry/oci.py), the layout
`cosign verify --key <pem> --insecure-ignore-tlog` reads (no cosign binary here to test that). SBOMs go
under `.sbom`, Trivy reports under `.scan`, the same way.

`verify_image` fails (raises `VerificationError`) when the tag points at another digest than expected, when
no signature is attached, when the payload names another digest or repository, or when the signature was
made with another key.
"""

from __future__ import annotations

import base64
import binascii
import json

from cryptography.hazmat.primitives.asymmetric import ec

from builders.errors import SigningError, VerificationError
from registry.keys import KeyPair, key_id, verify_signature
from registry.oci import ImageName, OciClient, OciError
from registry.schema import SbomRef, Signature

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
SIGNATURE_ARTIFACT = "application/vnd.dev.cosign.artifact.sig.v1+json"
SBOM_ARTIFACT = "application/vnd.dev.cosign.artifact.sbom.v1+json"
SPDX_MEDIA_TYPE = "text/spdx+json"
SCAN_MEDIA_TYPE = "application/vnd.curation.trivy.report.v1+json"
PAYLOAD_TYPE = "cosign container image signature"


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


def _repo(name: ImageName) -> str:
    return f"{name.registry}/{name.repository}"


def sign_image(reference: str, digest: str, key: KeyPair) -> Signature:
    """Sign `digest` (the image's manifest digest in the registry of `reference`) and store the signature."""
    name = ImageName.parse(reference)
    try:
        with OciClient.for_registry(name.registry) as oci:
            subject = oci.get_manifest(name.repository, digest)
            payload = simple_signing_payload(_repo(name), digest, {"key-id": key.key_id})
            signature = base64.b64encode(key.sign(payload)).decode()
            sig_digest, tag = oci.attach(
                name.repository,
                subject,
                suffix="sig",
                artifact_type=SIGNATURE_ARTIFACT,
                layers=[(payload, SIMPLE_SIGNING, {SIGNATURE_ANNOTATION: signature})],
            )
    except OciError as exc:
        raise SigningError(f"cannot sign {reference}@{digest}: {exc}") from exc
    return Signature(
        algorithm="ecdsa-p256-sha256",
        key_id=key.key_id,
        signed_digest=digest,
        reference=name.with_tag(tag),
        signature_digest=sig_digest,
    )


def _resolve(oci: OciClient, name: ImageName, expected_digest: str | None) -> str:
    if name.digest:
        digest = name.digest
        if oci.manifest_digest(name.repository, digest) is None:
            raise VerificationError(f"{name} is not in the registry")
    else:
        found = oci.manifest_digest(name.repository, name.ref)
        if found is None:
            raise VerificationError(f"{name} is not in the registry")
        digest = found
    if expected_digest is not None and digest != expected_digest:
        raise VerificationError(
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
    if identity != _repo(name):
        return f"signature names {identity}, not {_repo(name)}"
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return "signature is not base64"
    if not verify_signature(public_key, raw, payload):
        return "signature does not verify with this key (signed with another key, or altered)"
    return None


def verify_image(reference: str, public_key: ec.EllipticCurvePublicKey, *, expected_digest: str | None = None) -> str:
    """Verify the image's signature; returns the verified digest. Raises `VerificationError` otherwise."""
    name = ImageName.parse(reference)
    try:
        with OciClient.for_registry(name.registry) as oci:
            digest = _resolve(oci, name, expected_digest)
            manifest = oci.attached(name.repository, digest, "sig")
            if manifest is None:
                raise VerificationError(f"{_repo(name)}@{digest} has no signature: sign it before using it")
            layers = manifest.json().get("layers") or []
            reasons = []
            for layer in layers if isinstance(layers, list) else []:
                problem = _check_layer(oci, name, digest, layer, public_key)
                if problem is None:
                    return digest
                reasons.append(problem)
    except OciError as exc:
        raise VerificationError(f"cannot verify {reference}: {exc}") from exc
    raise VerificationError(
        f"no valid signature for {_repo(name)}@{digest} with key {key_id(public_key)[:16]}: " + "; ".join(reasons)
    )


def _attach(reference: str, digest: str, *, suffix: str, artifact_type: str, data: bytes, media_type: str) -> str:
    name = ImageName.parse(reference)
    try:
        with OciClient.for_registry(name.registry) as oci:
            subject = oci.get_manifest(name.repository, digest)
            _, tag = oci.attach(
                name.repository,
                subject,
                suffix=suffix,
                artifact_type=artifact_type,
                layers=[(data, media_type, {})],
            )
    except OciError as exc:
        raise SigningError(f"cannot attach the {suffix} to {reference}@{digest}: {exc}") from exc
    return name.with_tag(tag)


def attach_sbom(reference: str, digest: str, sbom: bytes, ref: SbomRef) -> SbomRef:
    """Store the (validated) SBOM next to the image; returns `ref` with the artifact's reference."""
    where = _attach(
        reference, digest, suffix="sbom", artifact_type=SBOM_ARTIFACT, data=sbom, media_type=SPDX_MEDIA_TYPE
    )
    return ref.model_copy(update={"reference": where})


def attach_scan_report(reference: str, digest: str, report: bytes) -> str:
    """Store Trivy's JSON report next to the image; returns the artifact's reference."""
    return _attach(
        reference,
        digest,
        suffix="scan",
        artifact_type=SCAN_MEDIA_TYPE,
        data=report,
        media_type=SCAN_MEDIA_TYPE,
    )


def fetch_attached(reference: str, digest: str, suffix: str) -> bytes | None:
    """The first layer of the artifact attached under `suffix` (sbom, scan, sig), or None."""
    name = ImageName.parse(reference)
    with OciClient.for_registry(name.registry) as oci:
        manifest = oci.attached(name.repository, digest, suffix)
        if manifest is None:
            return None
        layers = manifest.json().get("layers") or []
        if not layers:
            return None
        return oci.get_blob(name.repository, str(layers[0]["digest"]))
