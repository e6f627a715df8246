"""Sign runtime images over their manifest digest (cosign-compatible), verify them, attach SBOMs and reports.

The signature is a cosign "simple signing" payload
`{"critical": {"identity": {"docker-reference": REPO}, "image": {"docker-manifest-digest": DIGEST},
"type": "cosign container image signature"}, "optional": {...}}` signed with the pipeline's EC P-256 key
(ECDSA over SHA-256, DER, base64 in the layer annotation `dev.cosignproject.cosign/signature`), stored as an
OCI artifact referring to the image under cosign's tag `sha256-<hex>.sig` (see registry/oci.py), the layout
`cosign verify --key <pem> --insecure-ignore-tlog` reads (no cosign binary here to test that). SBOMs go
under `.sbom`, Trivy reports under `.scan`, the same way.

Signatures are verified with `registry.image_signatures.verify_image` (every consumer reads the bottom layer).
"""

from __future__ import annotations

import base64

from builders.errors import SigningError
from registry.image_signatures import SIGNATURE_ANNOTATION, SIMPLE_SIGNING, repository_of, simple_signing_payload
from registry.keys import KeyPair
from registry.oci import ImageName, OciClient, OciError
from registry.schema import SbomRef, Signature

SIGNATURE_ARTIFACT = "application/vnd.dev.cosign.artifact.sig.v1+json"
SBOM_ARTIFACT = "application/vnd.dev.cosign.artifact.sbom.v1+json"
SPDX_MEDIA_TYPE = "text/spdx+json"
SCAN_MEDIA_TYPE = "application/vnd.curation.trivy.report.v1+json"


def sign_image(reference: str, digest: str, key: KeyPair) -> Signature:
    """Sign `digest` (the image's manifest digest in the registry of `reference`) and store the signature."""
    name = ImageName.parse(reference)
    try:
        with OciClient.for_registry(name.registry) as oci:
            subject = oci.get_manifest(name.repository, digest)
            payload = simple_signing_payload(repository_of(name), digest, {"key-id": key.key_id})
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
