"""The pipeline's EC P-256 signing key: loaded from settings, or generated once under the data directory.

Weights (model-signing), images (simple-signing payloads) and catalog entries are all signed with it. The key
material never appears in logs or records; records carry only `key_id`, the sha256 of the public key's DER.
Sources, in order: `signing.key_pem` (CURATE_SIGNING__KEY_PEM), a Prefect Secret block named by
`signing.secret_block`, `signing.key_path`, else `<data_dir>/keys/signing-key.pem` (created 0600 if missing).
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from registry.errors import RegistryError
from registry.settings import Settings


class SigningKeyError(RegistryError):
    """The signing key cannot be loaded; the message says which source was tried and how to fix it."""


@dataclass(frozen=True)
class KeyPair:
    private_path: Path
    public_path: Path
    key_id: str

    def private_key(self) -> ec.EllipticCurvePrivateKey:
        return load_private_key(self.private_path.read_bytes())

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return load_public_key(self.public_path.read_bytes())

    def sign(self, data: bytes) -> bytes:
        """DER ECDSA signature over sha256(data)."""
        return self.private_key().sign(data, ec.ECDSA(hashes.SHA256()))


def load_private_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError("the signing key is not an unencrypted PEM private key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise SigningKeyError("the signing key must be an EC P-256 (secp256r1) key")
    return key


def load_public_key(pem: bytes) -> ec.EllipticCurvePublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError("not a PEM public key") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise SigningKeyError("the public key must be an EC P-256 key")
    return key


def public_pem(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> bytes:
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_id(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> str:
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def verify_signature(public_key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def generate_private_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    """Write via a temp file and rename, so a concurrent reader never sees a half-written key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def _create_once(path: Path, pem: bytes) -> None:
    """Create `path` unless another thread or process did first (link is atomic and refuses to overwrite)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass  # someone else created the key first: use theirs
    finally:
        tmp.unlink(missing_ok=True)


def _write_private(path: Path, pem: bytes) -> None:
    _atomic_write(path, pem, 0o600)


def _from_secret_block(name: str) -> bytes:
    from prefect.blocks.system import Secret

    try:
        block = Secret.load(name, _sync=True)  # type: ignore[call-arg]
        value = block.get()  # type: ignore[union-attr]
    except ValueError as exc:
        raise SigningKeyError(
            f"Prefect Secret block {name!r} was not found; create it or clear signing.secret_block"
        ) from exc
    return str(value).encode()


KEY_FILES_LOCK = threading.RLock()
"""Held while the key files are (re)written or read by a signer: flows run their tasks in threads."""


def signing_key(settings: Settings) -> KeyPair:
    """Load (or on first use create) the pipeline's signing key pair as files model-signing can read."""
    with KEY_FILES_LOCK:
        return _load_signing_key(settings)


def _load_signing_key(settings: Settings) -> KeyPair:
    keys_dir = settings.data_dir / "keys"
    pem: bytes | None = None
    if settings.signing.key_pem is not None:
        pem = settings.signing.key_pem.get_secret_value().encode()
    elif settings.signing.secret_block:
        pem = _from_secret_block(settings.signing.secret_block)
    if pem is not None:
        private_path = keys_dir / "from-settings.pem"
        if not private_path.is_file() or private_path.read_bytes() != pem:
            _write_private(private_path, pem)
    elif settings.signing.key_path:
        private_path = Path(settings.signing.key_path)
        if not private_path.is_file():
            raise SigningKeyError(f"signing.key_path {private_path} does not exist; fix the path or clear it")
    else:
        private_path = keys_dir / "signing-key.pem"
        if not private_path.is_file():
            _create_once(private_path, generate_private_pem())
    private = load_private_key(private_path.read_bytes())
    public_path = keys_dir / f"{private_path.stem}.pub.pem"
    public = public_pem(private)
    if not public_path.is_file() or public_path.read_bytes() != public:
        _atomic_write(public_path, public, 0o644)
    return KeyPair(private_path=private_path, public_path=public_path, key_id=key_id(private))
