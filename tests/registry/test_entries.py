"""Entry signatures and the export: what makes a published catalog entry trustworthy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from registry.entries import PublicationError, export_entries, load_exported_entry, sign_entry, verify_entry
from registry.keys import signing_key
from registry.settings import load_settings
from tests.decisions.test_publication import entry_for, inputs


def test_signature_round_trip_and_tamper_detection(tmp_path: Path) -> None:
    key = signing_key(load_settings(data_dir=tmp_path))
    signed = sign_entry(entry_for(inputs()), key)
    verify_entry(signed, key.public_key())

    flagged = signed.model_copy(update={"status_reason": "image now fails a rescan"})
    verify_entry(flagged, key.public_key())  # status changes do not break the signature

    tampered = signed.model_copy(update={"task": "embeddings"})
    with pytest.raises(PublicationError, match="changed after it was signed"):
        verify_entry(tampered, key.public_key())

    other = signing_key(load_settings(data_dir=tmp_path / "other"))
    with pytest.raises(PublicationError, match="not the trusted key"):
        verify_entry(signed, other.public_key())

    with pytest.raises(PublicationError, match="not signed"):
        verify_entry(signed.model_copy(update={"signature": None}), key.public_key())


def test_export_writes_entries_index_and_key(tmp_path: Path) -> None:
    key = signing_key(load_settings(data_dir=tmp_path))
    signed = sign_entry(entry_for(inputs()), key)
    index_path = export_entries([signed], tmp_path / "export", key.public_key())
    index = json.loads(index_path.read_text())
    assert [e["id"] for e in index["entries"]] == [signed.id]
    assert (tmp_path / "export" / "keys" / f"{key.key_id}.pem").is_file()
    loaded = load_exported_entry(tmp_path / "export", signed.id)
    assert loaded == signed
    verify_entry(loaded, key.public_key())
    with pytest.raises(PublicationError, match="no exported entry"):
        load_exported_entry(tmp_path / "export", "nope--nope")
