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


def test_a_cell_runs_on_the_newest_signed_image_that_serves_its_vendor(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from flows.validate import current_image
    from registry.catalog import CatalogStore
    from registry.schema import Signature
    from registry.settings import load_settings

    def signed(digit: str, vendors: tuple[str, ...], minutes: int) -> RuntimeImage:
        digest = "sha256:" + digit * 64
        signature = Signature(key_id="k", signed_digest=digest, reference="r")
        built_at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=minutes)
        reference = f"127.0.0.1:5000/tei:1.8.2-{digit * 12}"
        return RuntimeImage(
            runtime="tei", version="1.8.2", reference=reference, digest=digest, vendors=vendors,
            signature=signature, built_at=built_at,
        )  # fmt: skip

    with CatalogStore.from_settings(load_settings(data_dir=tmp_path / "data")) as store:
        cpu, nvidia = signed("2", ("cpu",), 1), signed("3", ("nvidia",), 2)
        store.record_image(cpu)
        store.record_image(nvidia)
        assert current_image(store, "tei", "cpu") == cpu
        assert current_image(store, "tei", "nvidia") == nvidia
        assert current_image(store, "tei") == nvidia
        assert current_image(store, "tei", "amd") is None
        legacy = signed("4", (), 3)  # recorded before images named their vendors: serves any
        store.record_image(legacy)
        assert current_image(store, "tei", "cpu") == legacy


def test_an_upstream_runtime_wrapped_for_one_vendor_says_which_others_are_not() -> None:
    from datetime import UTC, datetime

    from registry.runtimes.pins import PinnedDigest, Pins

    pins = Pins()
    for vendor, tag in (("cpu", "cpu-1.8.2"), ("nvidia", "hopper-1.8.2")):
        reference = f"ghcr.io/huggingface/text-embeddings-inference:{tag}"
        pin = PinnedDigest(reference=reference, digest=DIGEST, resolved_from=reference, pinned_at=datetime.now(UTC))
        pins = pins.with_pin("tei", vendor, pin)
    runtimes = all_runtimes(pins)
    [unwrapped] = [r for r in runtime_rows({}, runtimes) if r.runtime == "tei"]
    assert unwrapped.reason == "not available: not mirrored and wrapped yet; run `curate images build --runtime tei`"
    cpu_only: dict[str, RuntimeImage | None] = {"tei": _image("tei").model_copy(update={"vendors": ("cpu",)})}
    [row] = [r for r in runtime_rows(cpu_only, runtimes, {"tei": {"cpu"}}) if r.runtime == "tei"]
    assert row.available and list(row.unavailable_vendors) == ["nvidia"]
    assert row.unavailable_vendors["nvidia"].startswith("pinned, not mirrored and wrapped yet")
