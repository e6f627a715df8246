"""The hf-serve entrypoint's fetch logic (run on the host: it is standard-library Python)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from builders.recipes import hf_serve_entrypoint as ep


def _manifest(files: dict[str, bytes], revision: str = "a" * 40) -> dict[str, object]:
    return {
        "ref": {"repo_id": "org/model", "revision": revision},
        "files": [{"name": n, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()} for n, d in files.items()],
    }


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/../../b", "a\\b", "", "a//b", "x\x00y", 7])
def test_hostile_names_are_refused(name: object) -> None:
    with pytest.raises(ep.FetchError):
        ep.safe_name(name)


def test_manifest_parsing_skips_reserved_and_checks_fields() -> None:
    doc = _manifest({"config.json": b"{}", "curation.sig": b"sig"})
    revision, files = ep.parse_manifest(doc)
    assert revision == "a" * 40
    assert [f[0] for f in files] == ["config.json"]
    with pytest.raises(ep.FetchError):
        ep.parse_manifest({"files": [{"name": "a", "size": "1", "sha256": "0" * 64}]})
    with pytest.raises(ep.FetchError):
        ep.parse_manifest({"nope": []})


def test_blob_url_keeps_the_sas_query() -> None:
    url = ep.blob_url("http://127.0.0.1:10000/eastus/weights?sv=1&sig=abc", "org/m/rev/model file.json")
    assert url == "http://127.0.0.1:10000/eastus/weights/org/m/rev/model%20file.json?sv=1&sig=abc"


def test_fetch_from_dir_lays_out_an_hf_cache_and_verifies(tmp_path: Path) -> None:
    files = {"config.json": b'{"a": 1}', "model.safetensors": b"x" * 1000}
    src = tmp_path / "src"
    src.mkdir()
    for name, data in files.items():
        (src / name).write_bytes(data)
    (src / ep.MANIFEST_NAME).write_text(json.dumps(_manifest(files, "b" * 40)))
    snap = ep.fetch_from_dir(src, "org/model", None, tmp_path / "hf")
    assert snap == tmp_path / "hf" / "hub" / "models--org--model" / "snapshots" / ("b" * 40)
    assert (snap / "model.safetensors").read_bytes() == files["model.safetensors"]
    assert (tmp_path / "hf" / "hub" / "models--org--model" / "refs" / "main").read_text() == "b" * 40
    # A file that does not match the manifest is refused and not left behind.
    (src / "model.safetensors").write_bytes(b"y" * 1000)
    with pytest.raises(ep.FetchError, match="sha256"):
        ep.fetch_from_dir(src, "org/model", None, tmp_path / "hf2")
    assert not list((tmp_path / "hf2").rglob("model.safetensors*"))
