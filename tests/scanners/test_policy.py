from __future__ import annotations

from registry import finding_codes as codes
from registry.rules import ACCEPT, AllOf, AnyOf, Fixed, Outcome, Rule
from registry.schema import Finding, Severity, Verdict
from registry.settings import load_settings
from scanners.policy import AllowRepos, ByDisposition, Subject, default_policy


def _f(code: str, severity: Severity = Severity.HIGH) -> Finding:
    return Finding(scanner="t", code=code, severity=severity, message=f"{code} happened", path="x")


def test_default_policy_verdicts() -> None:
    policy = default_policy(load_settings())
    assert isinstance(policy, Rule)
    assert policy.evaluate(Subject("o/r", (_f(codes.LICENSE_ALLOWED, Severity.INFO),))).verdict is Verdict.ACCEPTED
    review = policy.evaluate(Subject("o/r", (_f(codes.LICENSE_REVIEW, Severity.MEDIUM), _f(codes.NEEDS_TOKEN))))
    assert review.verdict is Verdict.NEEDS_REVIEW
    assert len(review.review) == 2 and review.review[0].startswith("license.needs-review (x)")
    rejected = policy.evaluate(Subject("o/r", (_f(codes.LICENSE_REVIEW), _f(codes.PICKLE_DANGEROUS_IMPORT))))
    assert rejected.verdict is Verdict.REJECTED and rejected.reasons[0].startswith("pickle.dangerous-import")


def test_unknown_codes_fall_back_to_severity() -> None:
    policy = ByDisposition()
    assert policy.evaluate(Subject("o/r", (_f("new.thing", Severity.CRITICAL),))).verdict is Verdict.REJECTED
    assert policy.evaluate(Subject("o/r", (_f("new.thing", Severity.MEDIUM),))).verdict is Verdict.NEEDS_REVIEW
    assert policy.evaluate(Subject("o/r", (_f("new.thing", Severity.LOW),))).verdict is Verdict.ACCEPTED


def test_remote_code_is_lifted_only_by_the_allow_list() -> None:
    settings = load_settings(screening={"allow_remote_code": ["org/trusted"]})
    policy = default_policy(settings)
    findings = (_f(codes.REMOTE_CODE_AUTO_MAP),)
    assert policy.evaluate(Subject("org/trusted", findings)).verdict is Verdict.ACCEPTED
    assert policy.evaluate(Subject("org/other", findings)).verdict is Verdict.REJECTED
    # The allow-list lifts remote code only, never anything else.
    both = (*findings, _f(codes.SECRET_FOUND))
    assert policy.evaluate(Subject("org/trusted", both)).verdict is Verdict.REJECTED


def test_composition() -> None:
    subject = Subject("o/r", ())
    review = Fixed(Outcome(Verdict.NEEDS_REVIEW, review=("look",)))
    reject = Fixed(Outcome(Verdict.REJECTED, reasons=("no",)))
    assert AllOf(Fixed(), review).evaluate(subject) == Outcome(Verdict.NEEDS_REVIEW, (), ("look",))
    assert AllOf(review, reject).evaluate(subject).verdict is Verdict.REJECTED
    assert AnyOf(reject, Fixed()).evaluate(subject) == ACCEPT
    assert AnyOf(reject, review).evaluate(subject) == Outcome(Verdict.NEEDS_REVIEW, (), ("look",))
    assert AllowRepos(("a/b",)).evaluate(Subject("a/b", ())) == ACCEPT
