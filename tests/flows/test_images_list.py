"""`curate images list`: every runtime with the digest its cells run on, or "not available: <why>" (no Docker)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from flows.cli.app import app
from flows.cli.images import runtime_rows
from registry.runtimes import all_runtimes
from registry.schema import RuntimeImage

DIGEST = "sha256:" + "1" * 64


def _image(runtime: str) -> RuntimeImage:
    return RuntimeImage(runtime=runtime, version="9", reference=f"127.0.0.1:5000/{runtime}:9-abc", digest=DIGEST)


def test_every_runtime_has_a_digest_or_says_why_not() -> None:
    rows = {row.runtime: row for row in runtime_rows({"hf-serve": _image("hf-serve"), "vllm": _image("vllm")})}
    assert set(rows) == set(all_runtimes())
    assert rows["hf-serve"].available and rows["hf-serve"].digest == DIGEST and rows["hf-serve"].reason == ""
    assert rows["vllm"].available and rows["vllm"].unavailable_vendors == {
        "amd": "the vllm image built here is for nvidia only, not amd"
    }
    assert rows["sglang"].reason == "not available: not built yet; run `curate images build --runtime sglang`"
    for upstream in ("tei", "tensorrt-llm", "nim"):
        row = rows[upstream]
        assert not row.available and row.digest is None and row.source == "upstream"
        assert row.reason.startswith("not available: no pinned digest for ") and "curate images pin" in row.reason


def test_images_list_json_without_any_image(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["--data-dir", str(tmp_path / "data"), "images", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [row["runtime"] for row in rows] == list(all_runtimes())
    assert all(row["available"] is False and row["reason"].startswith("not available: ") for row in rows)
    one = CliRunner().invoke(app, ["--data-dir", str(tmp_path / "data"), "images", "list", "-r", "tei", "--json"])
    assert [row["runtime"] for row in json.loads(one.stdout)] == ["tei"]
    history = CliRunner().invoke(app, ["--data-dir", str(tmp_path / "data"), "images", "list", "--history", "--json"])
    assert json.loads(history.stdout) == []
