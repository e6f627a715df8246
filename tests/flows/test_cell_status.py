"""Honest cell statuses: image not available (and why), no capacity (no worker online, only that), not run (a
quota too small), failed, validated; decided before a cell is dispatched, without Docker or Prefect."""

from __future__ import annotations

import pydantic
import pytest

from flows.placement import NO_CAPACITY, place
from flows.validate import IMAGE_NOT_AVAILABLE, image_problem
from registry.schema import CellStatus, DeploymentTemplate, RuntimeImage, ValidationResult, ValidationVerdict
from registry.settings import load_settings


def _template(runtime: str, vendor: str, family: str, count: int = 1) -> DeploymentTemplate:
    return DeploymentTemplate(
        id=f"a--b--8k-{vendor}",
        runtime=runtime,
        accelerator_family=family,
        vendor=vendor,
        count=count,
        context_length=8192,
    )


def _image(runtime: str) -> RuntimeImage:
    return RuntimeImage(runtime=runtime, version="1", reference=f"r/{runtime}:1", digest="sha256:" + "0" * 64)


def test_image_not_available_says_why() -> None:
    amd = image_problem(_template("vllm", "amd", "MI_300_192GB"), _image("vllm"))
    assert amd == f"{IMAGE_NOT_AVAILABLE}: the vllm image built here is for nvidia only, not amd"
    unbuilt = image_problem(_template("vllm", "nvidia", "H100_80GB"), None) or ""
    assert unbuilt.startswith(IMAGE_NOT_AVAILABLE) and "curate images build --runtime vllm" in unbuilt
    upstream = image_problem(_template("tei", "nvidia", "H100_80GB"), None) or ""
    assert "no pinned digest" in upstream
    assert image_problem(_template("vllm", "nvidia", "H100_80GB"), _image("vllm")) is None
    assert image_problem(_template("hf-serve", "cpu", "cpu"), _image("hf-serve")) is None


def test_no_capacity_is_only_for_a_pool_without_a_worker() -> None:
    settings = load_settings()
    no_worker = place(settings, _template("vllm", "nvidia", "H100_80GB"), online={})
    assert no_worker.site is None and no_worker.cause is CellStatus.NO_CAPACITY
    assert no_worker.reason.startswith(f"{NO_CAPACITY}: no worker online for pool gpu-h100")
    too_big = place(settings, _template("vllm", "nvidia", "H100_80GB", count=16), online={"gpu-h100": "process"})
    assert too_big.site is None and too_big.cause is CellStatus.NOT_RUN
    assert not too_big.reason.startswith(NO_CAPACITY) and "smaller than the 16 device(s)" in too_big.reason
    assert place(settings, _template("vllm", "nvidia", "H100_80GB"), online={"gpu-h100": "process"}).site is not None


def test_a_result_status_follows_its_verdict_and_cause() -> None:
    template = _template("hf-serve", "cpu", "cpu")
    assert ValidationResult(template=template, verdict=ValidationVerdict.PASSED).status is CellStatus.VALIDATED
    assert ValidationResult(template=template, verdict=ValidationVerdict.FAILED).status is CellStatus.FAILED
    missing = ValidationResult(
        template=template, verdict=ValidationVerdict.NOT_VALIDATED, not_run=CellStatus.IMAGE_NOT_AVAILABLE
    )
    assert missing.status is CellStatus.IMAGE_NOT_AVAILABLE
    older = ValidationResult(template=template, verdict=ValidationVerdict.NOT_VALIDATED)  # recorded before v6
    assert older.status is CellStatus.NOT_RUN
    with pytest.raises(pydantic.ValidationError, match="not_run"):
        ValidationResult(template=template, verdict=ValidationVerdict.PASSED, not_run=CellStatus.NO_CAPACITY)
