"""The signing key: generated once, loaded from PEM, a Prefect Secret block or a path; never a wrong curve."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from registry.errors import RegistryError
from registry.keys import SigningKeyError, generate_private_pem, signing_key, verify_signature
from registry.settings import load_settings


def test_generated_once_private_and_stable(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    first = signing_key(settings)
    second = signing_key(settings)
    assert first.key_id == second.key_id
    assert stat.S_IMODE(first.private_path.stat().st_mode) == 0o600
    signature = first.sign(b"payload")
    assert verify_signature(first.public_key(), signature, b"payload")
    assert not verify_signature(first.public_key(), signature, b"other payload")


def test_pem_from_settings_wins(tmp_path: Path) -> None:
    pem = generate_private_pem()
    pair = signing_key(load_settings(data_dir=tmp_path, signing={"key_pem": pem.decode()}))
    assert pair.private_path.read_bytes() == pem


def test_missing_key_path_says_what_to_fix(tmp_path: Path) -> None:
    with pytest.raises(SigningKeyError, match="does not exist") as raised:
        signing_key(load_settings(data_dir=tmp_path, signing={"key_path": str(tmp_path / "nope.pem")}))
    assert isinstance(raised.value, RegistryError)  # one hierarchy: callers never list it apart


def test_non_p256_keys_are_refused(tmp_path: Path) -> None:
    other = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path = tmp_path / "p384.pem"
    path.write_bytes(other)
    with pytest.raises(SigningKeyError, match="P-256"):
        signing_key(load_settings(data_dir=tmp_path, signing={"key_path": str(path)}))


def test_key_from_a_prefect_secret_block(prefect_harness: None, tmp_path: Path) -> None:
    from prefect.blocks.system import Secret

    pem = generate_private_pem()
    Secret(value=pem.decode()).save("curation-signing-key", overwrite=True)
    pair = signing_key(load_settings(data_dir=tmp_path, signing={"secret_block": "curation-signing-key"}))
    assert pair.private_path.read_bytes() == pem
    with pytest.raises(SigningKeyError, match="was not found"):
        signing_key(load_settings(data_dir=tmp_path, signing={"secret_block": "no-such-block"}))
