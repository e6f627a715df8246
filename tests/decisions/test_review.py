"""decisions/review.py: which decision covers a screening (rejection final per revision, approval carry-over) and
when a request expires."""

from __future__ import annotations

from datetime import timedelta

from decisions.review import (
    REVIEW,
    ReviewSubject,
    decision_text,
    decisions_digest,
    expired,
    new_decision,
    request_expiry,
    reviewed,
    scope_of,
)
from registry.review_settings import ReviewSettings
from registry.schema import (
    Finding,
    LicenseReference,
    ModelOutcome,
    ModelRef,
    ModelRow,
    ReviewVerdict,
    ScreeningReport,
    Severity,
    Verdict,
    utcnow,
)
from tests.fixtures.catalog import sha40, sha64

REPO = "curation-samples/llama3-licensed-model"


def report(seed: int, licence_file: str = "v1", codes: tuple[str, ...] = ("license.needs-review",)) -> ScreeningReport:
    return ScreeningReport(
        ref=ModelRef(repo_id=REPO, revision=sha40(REPO, seed)),
        verdict=Verdict.NEEDS_REVIEW,
        findings=tuple(Finding(scanner="licenses", code=c, severity=Severity.MEDIUM, message=c) for c in codes),
        license=LicenseReference(spdx="LicenseRef-llama3", file="LICENSE", file_sha256=sha64(licence_file)),
        review=("license.needs-review: LicenseRef-llama3 is on the review list",),
    )


def test_an_approval_accepts_its_revision_and_carries_over_only_when_nothing_changed() -> None:
    first = report(1)
    approval = new_decision(first, ReviewVerdict.APPROVE, " ada ", "read the llama3 licence: redistribution ok")
    assert approval.reviewer == "ada" and approval.decision_id.startswith("cli-")
    assert REVIEW.evaluate(ReviewSubject(first)).verdict is Verdict.NEEDS_REVIEW
    assert REVIEW.evaluate(ReviewSubject(first, (approval,))).accepted
    applied = reviewed(first, [approval])
    assert applied.verdict is Verdict.ACCEPTED and applied.reviews == (approval,)

    same_terms = report(2)
    assert reviewed(same_terms, [approval]).verdict is Verdict.ACCEPTED
    for changed in (report(3, licence_file="v2"), report(4, codes=("license.needs-review", "access.needs-token"))):
        subject = ReviewSubject(changed, (approval,))
        assert subject.covering() is None
        assert REVIEW.evaluate(subject).verdict is Verdict.NEEDS_REVIEW
        assert reviewed(changed, [approval]) == changed


def test_a_rejection_is_final_for_its_revision_only() -> None:
    first = report(1)
    rejection = new_decision(first, ReviewVerdict.REJECT, "bob", "acceptable-use clause conflicts", "run-1")
    approval = new_decision(first, ReviewVerdict.APPROVE, "ada", "changed my mind")
    later = approval.model_copy(update={"decided_at": rejection.decided_at + timedelta(hours=1)})
    outcome = REVIEW.evaluate(ReviewSubject(first, (later, rejection)))
    assert outcome.verdict is Verdict.REJECTED and "rejected by bob" in outcome.reasons[0]
    assert rejection.decision_id == "run-run-1"
    assert reviewed(report(2), [rejection]).verdict is Verdict.NEEDS_REVIEW
    assert "acceptable-use" in decision_text(rejection)


def test_a_review_never_lifts_a_screening_rejection_and_the_digest_moves_with_decisions() -> None:
    rejected = report(1).model_copy(update={"verdict": Verdict.REJECTED})
    approval = new_decision(report(1), ReviewVerdict.APPROVE, "ada", "ok")
    assert REVIEW.evaluate(ReviewSubject(rejected, (approval,))).verdict is Verdict.REJECTED
    assert reviewed(rejected, [approval]) is rejected
    assert decisions_digest([]) != decisions_digest([approval])
    assert scope_of(report(1)).finding_codes == ("license.needs-review",)


def test_an_unanswered_request_expires_after_the_policy_time() -> None:
    asked = utcnow()
    expires = request_expiry(asked, ReviewSettings(expire_after_hours=2))
    assert expires - asked == timedelta(hours=2)
    row = ModelRow(run_id="r1", repo_id=REPO, outcome=ModelOutcome.NEEDS_REVIEW, review_expires_at=expires)
    assert expired(row, asked + timedelta(hours=1)) is None
    why = expired(row, asked + timedelta(hours=3))
    assert why is not None and "expired unanswered" in why
