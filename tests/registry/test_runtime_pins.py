"""Upstream pins: one checked-in file of digests, applied to the runtime model only for the declared reference."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from registry.runtimes import RuntimeSpecError, all_runtimes, get_runtime
from registry.runtimes.interface import Upstream, UpstreamImage
from registry.runtimes.pins import DEFAULT_PINS_FILE, PinnedDigest, Pins, load_pins, pin_key, save_pins, with_pins
from registry.settings import load_settings
from registry.upstream import UpstreamNotPinnedError, pinned_runtimes, upstream_sources

DIGEST = "sha256:" + "ab" * 32
TEI_CPU = "ghcr.io/huggingface/text-embeddings-inference:cpu-1.8.2"


def _pin(reference: str = TEI_CPU, digest: str = DIGEST) -> PinnedDigest:
    return PinnedDigest(reference=reference, digest=digest, resolved_from=reference, pinned_at=datetime.now(UTC))


def test_a_pin_applies_only_to_the_reference_it_was_made_for() -> None:
    tei = get_runtime("tei")
    pinned = with_pins(tei, Pins().with_pin("tei", "cpu", _pin()))
    assert isinstance(pinned.image, Upstream)
    assert pinned.image.images["cpu"].pinned == f"ghcr.io/huggingface/text-embeddings-inference@{DIGEST}"
    assert pinned.image_unavailable("cpu") is None
    assert "no pinned digest" in (pinned.image_unavailable("nvidia") or "")
    stale = with_pins(tei, Pins().with_pin("tei", "cpu", _pin(reference=TEI_CPU.replace("1.8.2", "1.7.0"))))
    assert isinstance(stale.image, Upstream) and stale.image.images["cpu"].digest is None
    assert with_pins(get_runtime("hf-serve"), Pins()) == get_runtime("hf-serve")


def test_pins_round_trip_sorted_and_a_malformed_file_says_so(tmp_path: Path) -> None:
    path = tmp_path / "pins.json"
    assert load_pins(path) == Pins()
    pins = Pins().with_pin("tei", "nvidia", _pin()).with_pin("nim", "nvidia", _pin("nvcr.io/nim/nvidia/llm-nim:1.13.1"))
    save_pins(pins, path)
    assert load_pins(path) == pins
    assert list(load_pins(path).pins) == ["nim/nvidia", "tei/nvidia"]
    path.write_text('{"pins": {"tei/cpu": {"reference": "x", "digest": "sha256:nope"}}}')
    with pytest.raises(RuntimeSpecError, match="malformed"):
        load_pins(path)
    with pytest.raises(ValidationError, match="sha256"):
        _pin(digest="md5:" + "0" * 32)


def test_upstream_references_carry_a_version_tag_never_latest() -> None:
    for reference in ("ghcr.io/x/y:latest", "ghcr.io/x/y", "ghcr.io/x/y@" + DIGEST, "y:1.0"):
        with pytest.raises(ValidationError, match="never latest"):
            UpstreamImage(reference=reference)


def test_the_checked_in_pins_name_declared_upstream_images() -> None:
    pins = load_pins(DEFAULT_PINS_FILE)
    declared = {
        pin_key(name, source.vendor): source.image.reference
        for name, runtime in all_runtimes().items()
        for source in upstream_sources(runtime)
    }
    for key, pin in pins.pins.items():
        assert declared.get(key) == pin.reference, f"{key} in {DEFAULT_PINS_FILE} is not a declared upstream image"


def test_the_policy_pins_file_and_mirror_decide_what_is_pulled(tmp_path: Path) -> None:
    path = tmp_path / "pins.json"
    save_pins(Pins().with_pin("tei", "cpu", _pin()), path)
    images = load_settings(images={"pins_file": str(path), "upstream_mirror": "127.0.0.1:5000"}).images
    cpu, nvidia = sorted(upstream_sources(pinned_runtimes(images)["tei"]), key=lambda s: s.vendor)
    assert cpu.pinned_source(images.upstream_mirror) == f"127.0.0.1:5000/huggingface/text-embeddings-inference@{DIGEST}"
    with pytest.raises(UpstreamNotPinnedError, match="curate images pin --runtime tei"):
        nvidia.pinned_source(images.upstream_mirror)
