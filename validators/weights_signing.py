"""Signing of staged weights with OpenSSF `model-signing` (EC P-256 key from `registry.keys.signing_key`).

`sign_weights` signs a directory (every file in it, by sha256, in the model-signing "files" serialisation) and
returns the `Signature` record. Verification comes in two forms:

- `verify_weights(dir, signature, public_key)`: model-signing's own verifier over a local copy of the files;
- `verify_envelope(signature, public_key)`: the DSSE envelope alone (ECDSA over the in-toto statement),
  returning the signed per-file sha256 digests, so a remote copy can be checked blob by blob against what was
  signed without downloading it (the blob hashes are re-computed by streaming).

The signature is a sigstore bundle (JSON, no transparency log: `tlogEntries` is empty for a key signer).
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from model_signing import signing, verifying
from pydantic import BaseModel, ConfigDict

from registry.blob_errors import BlobIntegrityError
from registry.blobs import RegionalBlobStore, is_reserved
from registry.keys import KEY_FILES_LOCK, KeyPair, SigningKeyError, key_id, load_public_key, verify_signature
from registry.schema import Signature
from validators.errors import ValidatorError

ALGORITHM = "model-signing-ecdsa-p256-sha256"
_PREDICATE_TYPE = "https://model_signing/signature/v1.0"


class WeightsSignatureError(ValidatorError):
    """The weights' signature is missing, malformed, made with another key, or does not match the files."""


class SignedManifest(BaseModel):
    """What a weights signature covers: the statement digest and each file's sha256."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    statement_digest: str
    files: dict[str, str]


def signature_digest(signature_bytes: bytes) -> str:
    return hashlib.sha256(signature_bytes).hexdigest()


def sign_weights(model_dir: Path, signature_path: Path, key: KeyPair, *, reference: str = "") -> Signature:
    """Sign every file under `model_dir` into `signature_path` (which must lie outside `model_dir`)."""
    model_dir = Path(model_dir).resolve()
    signature_path = Path(signature_path).resolve()
    if signature_path.is_relative_to(model_dir):
        raise WeightsSignatureError(f"the signature {signature_path} must be written outside {model_dir}")
    signature_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with KEY_FILES_LOCK:  # model-signing reads the key file: no other thread may rewrite it meanwhile
            config = signing.Config()  # type: ignore[no-untyped-call]
            config.use_elliptic_key_signer(private_key=key.private_path).sign(model_dir, signature_path)
    except (ValueError, OSError) as exc:
        raise WeightsSignatureError(f"signing {model_dir} failed: {exc}") from exc
    data = signature_path.read_bytes()
    manifest = verify_envelope(data, key.public_key())
    return Signature(
        algorithm=ALGORITHM,
        key_id=key.key_id,
        signed_digest=manifest.statement_digest,
        reference=reference or signature_path.name,
        signature_digest=signature_digest(data),
    )


def verify_weights(model_dir: Path, signature_path: Path, public_key_path: Path) -> SignedManifest:
    """model-signing's verifier over local files; raises WeightsSignatureError on any mismatch."""
    try:
        verifier = verifying.Config()  # type: ignore[no-untyped-call]
        verifier.use_elliptic_key_verifier(public_key=public_key_path).verify(model_dir, signature_path)
    except (ValueError, OSError) as exc:
        raise WeightsSignatureError(
            f"the signature {Path(signature_path).name} does not verify over {model_dir}: {_short(exc)}; "
            "the files were changed after signing or another key signed them: stage the model again"
        ) from exc
    return verify_envelope(Path(signature_path).read_bytes(), _load_public(public_key_path))


def verify_envelope(signature_bytes: bytes, public_key: ec.EllipticCurvePublicKey) -> SignedManifest:
    """Check the bundle's DSSE signature with `public_key` and return the signed file digests."""
    try:
        bundle = json.loads(signature_bytes)
        envelope = bundle["dsseEnvelope"]
        payload_type = str(envelope["payloadType"]).encode()
        payload = base64.b64decode(envelope["payload"], validate=True)
        signatures = envelope["signatures"]
        raw = [base64.b64decode(s["sig"], validate=True) for s in signatures]
    except (ValueError, KeyError, TypeError) as exc:
        raise WeightsSignatureError(f"the weights signature is not a model-signing bundle: {_short(exc)}") from exc
    pae = b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type, len(payload), payload)
    if not raw or not any(verify_signature(public_key, sig, pae) for sig in raw):
        raise WeightsSignatureError(
            f"the weights signature was not made by the configured key (key id {key_id(public_key)[:16]}); "
            "check signing.* settings or stage the model again with the current key"
        )
    return _manifest(payload)


def _manifest(payload: bytes) -> SignedManifest:
    try:
        statement: dict[str, Any] = json.loads(payload)
        if statement.get("predicateType") != _PREDICATE_TYPE:
            raise ValueError(f"unexpected predicate type {statement.get('predicateType')!r}")
        digest = str(statement["subject"][0]["digest"]["sha256"])
        files: dict[str, str] = {}
        for resource in statement["predicate"]["resources"]:
            if resource.get("algorithm") != "sha256":
                raise ValueError(f"resource {resource.get('name')!r} is not hashed with sha256")
            files[str(resource["name"])] = str(resource["digest"])
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise WeightsSignatureError(f"the signed statement cannot be read: {_short(exc)}") from exc
    return SignedManifest(statement_digest=digest, files=files)


def _load_public(path: Path) -> ec.EllipticCurvePublicKey:
    try:
        return load_public_key(Path(path).read_bytes())
    except (OSError, SigningKeyError) as exc:
        raise WeightsSignatureError(f"cannot read the public key {path}: {exc}") from exc


def _short(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "..."


def repair_advice(prefix: str) -> str:
    """The command that repairs a model's regional copies: `curate stage` re-hashing every blob (`--verify`)."""
    parts = prefix.strip("/").split("/")
    if len(parts) == 3:
        return f"run `curate stage {parts[0]}/{parts[1]} --revision {parts[2]} --verify` to repair it"
    return "run `curate stage <repo> --revision <revision> --verify` to repair it"


def verify_remote(
    store: RegionalBlobStore,
    region: str,
    prefix: str,
    public_key: ec.EllipticCurvePublicKey,
    *,
    signature_name: str,
    expected_signature: bytes | None = None,
) -> SignedManifest:
    """Verify one region's copy: its signature blob (by the key), then every signed blob by streamed sha256.

    `signature_name` is the signature blob under `prefix` (registry.blobs.signature_blob_name). The blobs under
    `prefix` (less the pipeline's own signatures and manifests) must be exactly the signed file set, each with
    the signed sha256 in content. Raises WeightsSignatureError or BlobIntegrityError (with `blob_name` set when
    one blob is at fault).
    """
    try:
        signature = store.get_bytes(region, prefix + signature_name, max_bytes=16 * 1024 * 1024)
    except BlobIntegrityError as exc:
        raise BlobIntegrityError(
            f"the weights signature {signature_name} is missing in region {region}; {repair_advice(prefix)}",
            region=region,
            blob_name=prefix + signature_name,
        ) from exc
    if expected_signature is not None and signature != expected_signature:
        raise BlobIntegrityError(
            f"the signature in region {region} differs from the one staged; {repair_advice(prefix)}",
            region=region,
            blob_name=prefix + signature_name,
        )
    manifest = verify_envelope(signature, public_key)
    names = {n[len(prefix) :] for n in store.list_names(region, prefix)}
    names = {n for n in names if not is_reserved(n)}
    if names != set(manifest.files):
        extra = sorted(names - set(manifest.files))[:5]
        missing = sorted(set(manifest.files) - names)[:5]
        raise BlobIntegrityError(
            f"region {region} holds a different file set than was signed (extra {extra}, missing {missing}); "
            + repair_advice(prefix),
            region=region,
        )
    for name, digest in sorted(manifest.files.items()):
        actual, _ = store.sha256_of(region, prefix + name)
        if actual != digest:
            raise BlobIntegrityError(
                f"{name} in region {region} does not match its signed sha256 (content was altered or "
                f"truncated); {repair_advice(prefix)}",
                region=region,
                blob_name=prefix + name,
            )
    return manifest
