"""model-signing over a staged file set: sign, verify, and refuse tampering and foreign keys."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from registry.keys import signing_key
from registry.settings import load_settings
from validators.weights_signing import (
    WeightsSignatureError,
    sign_weights,
    verify_envelope,
    verify_weights,
)


def _model(root: Path) -> dict[str, str]:
    files = {
        "model.safetensors": b"\x00" * 4096 + b"weights",
        "config.json": b"{}",
        "1_Pooling/config.json": b"{}",
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}


def test_sign_then_verify_lists_every_file(tmp_path: Path) -> None:
    key = signing_key(load_settings(data_dir=tmp_path / "a"))
    digests = _model(tmp_path / "m")
    signature = sign_weights(tmp_path / "m", tmp_path / "m.sig", key, reference="weights/org/m/rev/curation.sig")
    assert signature.key_id == key.key_id
    assert signature.signature_digest == hashlib.sha256((tmp_path / "m.sig").read_bytes()).hexdigest()
    manifest = verify_weights(tmp_path / "m", tmp_path / "m.sig", key.public_path)
    assert manifest.files == digests
    assert manifest.statement_digest == signature.signed_digest


def test_tampered_file_and_foreign_key_are_refused(tmp_path: Path) -> None:
    key = signing_key(load_settings(data_dir=tmp_path / "a"))
    other = signing_key(load_settings(data_dir=tmp_path / "b"))
    _model(tmp_path / "m")
    sign_weights(tmp_path / "m", tmp_path / "m.sig", key)
    with pytest.raises(WeightsSignatureError, match=r"another key|changed"):
        verify_weights(tmp_path / "m", tmp_path / "m.sig", other.public_path)
    with pytest.raises(WeightsSignatureError, match="not made by the configured key"):
        verify_envelope((tmp_path / "m.sig").read_bytes(), other.public_key())
    (tmp_path / "m" / "config.json").write_bytes(b'{"tampered": true}')
    with pytest.raises(WeightsSignatureError, match="does not verify"):
        verify_weights(tmp_path / "m", tmp_path / "m.sig", key.public_path)


def test_signature_must_live_outside_the_signed_directory(tmp_path: Path) -> None:
    key = signing_key(load_settings(data_dir=tmp_path / "a"))
    _model(tmp_path / "m")
    with pytest.raises(WeightsSignatureError, match="outside"):
        sign_weights(tmp_path / "m", tmp_path / "m" / "x.sig", key)
    with pytest.raises(WeightsSignatureError, match="not a model-signing bundle"):
        verify_envelope(b"not json", key.public_key())
