"""The publish decision: the publication gate, re-publication, and the entry it builds."""

from __future__ import annotations

import pytest

from decisions.errors import PublicationRefusedError
from decisions.publication import (
    IMAGE_MOVE,
    PUBLICATION_GATE,
    REPUBLICATION,
    GateInputs,
    build_entry,
    choose_images,
    latest_validations,
    publication_gate,
)
from registry.schema import (
    CatalogEntry,
    EntryStatus,
    LicenseReference,
    Provenance,
    RuntimeImage,
    ScanSummary,
    ScreeningReport,
    ValidationResult,
    ValidationVerdict,
    Verdict,
)
from tests.fixtures.catalog import sample_ref, sample_signature, sample_staged, sample_template, sha64

REF = sample_ref()
IMAGE_DIGEST = f"sha256:{sha64('vllm-image')}"


def image(**changes: object) -> RuntimeImage:
    base = RuntimeImage(
        runtime="vllm",
        version="0.11.0",
        reference="127.0.0.1:5000/vllm:0.11.0-abc",
        digest=IMAGE_DIGEST,
        scan=ScanSummary(passed=True),
        signature=sample_signature(IMAGE_DIGEST, "127.0.0.1:5000/vllm:sha256-x.sig"),
    )
    return base.model_copy(update=changes)


def validation(**changes: object) -> ValidationResult:
    weights = sample_staged(REF)
    assert weights.signature is not None
    base = ValidationResult(
        template=sample_template(REF),
        image_digest=IMAGE_DIGEST,
        weights_signature_digest=weights.signature.signature_digest,
        verdict=ValidationVerdict.PASSED,
    )
    return base.model_copy(update=changes)


def inputs(**changes: object) -> GateInputs:
    values: dict[str, object] = {
        "ref": REF,
        "screening": ScreeningReport(ref=REF, verdict=Verdict.ACCEPTED),
        "weights": sample_staged(REF),
        "images": {"vllm": image()},
        "validations": [validation()],
        "required_regions": ("eastus", "westeurope"),
    }
    values.update(changes)
    return GateInputs(**values)  # type: ignore[arg-type]


def entry_for(gate: GateInputs) -> CatalogEntry:
    spdx = LicenseReference(spdx="Apache-2.0")
    return build_entry(gate, task="chat", license_reference=spdx, provenance=Provenance())


def test_everything_in_place_publishes_with_pinned_images() -> None:
    assert publication_gate(inputs()) == []
    entry = entry_for(inputs())
    assert entry.id == "qwen--qwen3-0.6b"
    assert [t.template.id for t in entry.templates] == [sample_template(REF).id]
    assert entry.images == {"vllm": f"127.0.0.1:5000/vllm@{IMAGE_DIGEST}"}


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"screening": None}, "not screened"),
        ({"screening": ScreeningReport(ref=REF, verdict=Verdict.NEEDS_REVIEW)}, "needs-review, not accepted"),
        ({"screening": ScreeningReport(ref=sample_ref(seed=9), verdict=Verdict.ACCEPTED)}, "not screened"),
        ({"weights": None}, "weights not staged"),
        ({"required_regions": ("eastus", "westeurope", "southeastasia")}, "missing in region(s) southeastasia"),
        ({"images": {"vllm": image(scan=ScanSummary(passed=False))}}, "not passed its vulnerability gate"),
        ({"images": {"vllm": image(signature=None)}}, "is not signed"),
        ({"images": {"vllm": image(digest="sha256:" + "1" * 64)}}, "no deployment template passed"),
        ({"validations": [validation(verdict=ValidationVerdict.FAILED)]}, "no deployment template passed"),
        ({"validations": [validation(verdict=ValidationVerdict.NOT_VALIDATED)]}, "no deployment template passed"),
        ({"validations": [validation(weights_signature_digest="sha256:other")]}, "no deployment template passed"),
        ({"validations": []}, "no deployment template passed"),
    ],
)
def test_each_unmet_gate_blocks_publication(changes: dict[str, object], reason: str) -> None:
    gate = inputs(**changes)
    assert any(reason in r for r in publication_gate(gate)), publication_gate(gate)
    with pytest.raises(PublicationRefusedError, match="cannot be published"):
        entry_for(gate)


def test_unverified_region_blocks_publication() -> None:
    weights = sample_staged(REF)
    east = weights.regions["eastus"].model_copy(update={"verified_at": None})
    gate = inputs(weights=weights.model_copy(update={"regions": {**weights.regions, "eastus": east}}))
    assert any("not verified in region(s) eastus" in r for r in publication_gate(gate))


def test_failed_templates_are_left_out_but_passed_ones_listed() -> None:
    failing = validation(template=sample_template(REF, 128), verdict=ValidationVerdict.FAILED)
    entry = entry_for(inputs(validations=[validation(), failing]))
    assert [t.template.id for t in entry.templates] == [sample_template(REF).id]


def test_the_gate_is_a_rule_whose_reasons_are_the_gates() -> None:
    outcome = PUBLICATION_GATE.evaluate(inputs(screening=None, weights=None))
    assert outcome.verdict is Verdict.REJECTED
    assert outcome.reasons[:2] == ("not screened at this revision", "weights not staged at this revision")
    assert PUBLICATION_GATE.evaluate(inputs()).accepted


def test_an_entry_withdrawn_at_this_revision_is_not_republished() -> None:
    withdrawn = entry_for(inputs()).model_copy(update={"status": EntryStatus.WITHDRAWN, "status_reason": "gone"})
    assert not REPUBLICATION.evaluate(inputs(current=withdrawn)).accepted
    assert "withdrawn at this revision (gone)" in REPUBLICATION.evaluate(inputs(current=withdrawn)).reasons[0]
    elsewhere = withdrawn.model_copy(update={"model": sample_ref(seed=7)})
    assert REPUBLICATION.evaluate(inputs(current=elsewhere)).accepted
    assert REPUBLICATION.evaluate(inputs(current=entry_for(inputs()))).accepted


def test_newest_validation_per_template_and_the_image_it_ran_on() -> None:
    older = validation(verdict=ValidationVerdict.FAILED)
    newer = validation().model_copy(update={"started_at": older.started_at.replace(year=older.started_at.year + 1)})
    assert latest_validations([newer, older]) == [newer]
    ran_on, other = image(), image(digest="sha256:" + "2" * 64)
    assert choose_images({"vllm": [other, ran_on]}, [newer]) == {"vllm": ran_on}
    assert choose_images({"vllm": [other]}, [newer]) == {"vllm": other}
    assert choose_images({}, [newer]) == {}


# --------------------------------------------------------------------------------------------- image moves

NEW_DIGEST = f"sha256:{sha64('vllm-image-rebuilt')}"


def _published() -> CatalogEntry:
    return entry_for(inputs())


def test_an_entry_moves_to_a_new_image_only_when_its_templates_passed_there() -> None:
    current = _published()
    rebuilt = image(digest=NEW_DIGEST, reference="127.0.0.1:5000/vllm:0.11.1-def")
    # validated on the new image and failed: the entry keeps its binding, and the reason says which and why
    failed = validation(image_digest=NEW_DIGEST, verdict=ValidationVerdict.FAILED, reason="chat.seed failed")
    moving = inputs(current=current, images={"vllm": rebuilt}, validations=[failed])
    outcome = IMAGE_MOVE.evaluate(moving)
    assert not outcome.accepted
    (reason,) = outcome.reasons
    assert reason.startswith(f"keeps vllm image {current.images['vllm']}") and "chat.seed failed" in reason
    # passed there: it moves (and the entry built lists the new image)
    passed = inputs(current=current, images={"vllm": rebuilt}, validations=[validation(image_digest=NEW_DIGEST)])
    assert IMAGE_MOVE.evaluate(passed).accepted
    assert entry_for(passed).images["vllm"].endswith(NEW_DIGEST)


def test_no_move_no_entry_or_a_withdrawn_one_is_not_the_image_moves_business() -> None:
    current = _published()
    assert IMAGE_MOVE.evaluate(inputs(current=current)).accepted  # same image: nothing moves
    assert IMAGE_MOVE.evaluate(inputs()).accepted  # nothing published yet
    withdrawn = current.model_copy(update={"status": EntryStatus.WITHDRAWN})
    rebuilt = image(digest=NEW_DIGEST)
    assert IMAGE_MOVE.evaluate(inputs(current=withdrawn, images={"vllm": rebuilt})).accepted
    not_yet = inputs(current=current, images={"vllm": rebuilt}, validations=[validation()])
    assert "not validated on it yet" in IMAGE_MOVE.evaluate(not_yet).reasons[0]
