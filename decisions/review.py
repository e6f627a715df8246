"""Review a needs-review model: which maintainer decision covers a screening, and when a request expires.

A screening that needs review (a licence on the review list such as `LicenseRef-llama3`, a gated repository
without a token, ...) waits for a maintainer's `ReviewDecision` (Prefect UI flow-run input or `curate review
approve|reject`). Each decision records exactly what it covers (`ReviewScope`: the revision, the licence
expression, the licence file's sha256 and every finding code). The rules, all here:

- **A rejection is final for its revision**: that revision is rejected whatever comes later; a new revision is
  asked again.
- **An approval carries over** to another revision (or a re-screening) only when the licence expression, the
  licence file's digest and the finding codes are all unchanged; otherwise review is asked again, naming what
  changed.
- **Expiry**: an unanswered request expires `review.expire_after_hours` after it was asked (`REQUEST_EXPIRY`);
  the row says so and the next weekly run asks again. Nothing waits forever.

`REVIEW` is the rule of the one shape (registry/rules.py) over a `ReviewSubject` (the scanners' report and the
repository's decisions): accepted = approved (or nothing to review), needs-review = waiting for a maintainer,
rejected = a maintainer rejected this revision (or screening itself rejected it: a review never lifts that).
Approvals are part of the screening cache key (`decisions_digest`, flows/screen.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import uuid4

from registry.review_settings import ReviewSettings
from registry.rules import ACCEPT, Check, Outcome
from registry.schema import (
    ModelRow,
    ReviewDecision,
    ReviewScope,
    ReviewVerdict,
    ScreeningReport,
    Verdict,
    utcnow,
)


def scope_of(report: ScreeningReport) -> ReviewScope:
    """What a decision on this screening covers."""
    lic = report.license
    return ReviewScope(
        ref=report.ref,
        license_expression=lic.spdx or lic.declared,
        license_file_sha256=lic.file_sha256,
        finding_codes=tuple(sorted(set(report.codes))),
    )


def scope_changes(approved: ReviewScope, current: ReviewScope) -> list[str]:
    """What differs between the scope a decision covered and the current one (the revision aside)."""
    changes: list[str] = []
    if approved.license_expression != current.license_expression:
        changes.append(f"licence {approved.license_expression or '-'} -> {current.license_expression or '-'}")
    if approved.license_file_sha256 != current.license_file_sha256:
        old, new = approved.license_file_sha256 or "-", current.license_file_sha256 or "-"
        changes.append(f"licence file sha256 {old[:12]} -> {new[:12]}")
    if approved.finding_codes != current.finding_codes:
        added = sorted(set(current.finding_codes) - set(approved.finding_codes))
        gone = sorted(set(approved.finding_codes) - set(current.finding_codes))
        changes.append("finding codes " + ", ".join([*(f"+{c}" for c in added), *(f"-{c}" for c in gone)]))
    return changes


def covers(decision: ReviewDecision, scope: ReviewScope) -> str | None:
    """None when `decision` covers `scope`; else why not."""
    if decision.verdict is ReviewVerdict.REJECT:
        return None if decision.scope.ref == scope.ref else "a rejection covers its own revision only"
    changes = scope_changes(decision.scope, scope)
    return f"changed since the approval of {decision.scope.ref}: {'; '.join(changes)}" if changes else None


@dataclass(frozen=True)
class ReviewSubject:
    """What the review rule judges: the scanners' report and the repository's decisions (any order)."""

    report: ScreeningReport
    decisions: tuple[ReviewDecision, ...] = ()

    def covering(self) -> ReviewDecision | None:
        """A rejection of this revision if there is one (final); else the newest approval that carries over."""
        scope = scope_of(self.report)
        newest = sorted(self.decisions, key=lambda d: d.decided_at, reverse=True)
        for decision in newest:
            if decision.verdict is ReviewVerdict.REJECT and decision.scope.ref == scope.ref:
                return decision
        return next((d for d in newest if d.verdict is ReviewVerdict.APPROVE and covers(d, scope) is None), None)


def decision_text(decision: ReviewDecision) -> str:
    """`approved by ada on 2026-11-30: <reason>` (one line, for rows, artifacts and catalog-diff)."""
    verb = "approved" if decision.verdict is ReviewVerdict.APPROVE else "rejected"
    return f"{verb} by {decision.reviewer} on {decision.decided_at:%Y-%m-%d %H:%M} UTC: {decision.reason}"


@dataclass(frozen=True)
class ReviewRule:
    """The review decision as a rule (see the module docstring)."""

    def evaluate(self, subject: ReviewSubject) -> Outcome:
        report = subject.report
        if report.verdict is not Verdict.NEEDS_REVIEW:
            return ACCEPT if report.verdict is Verdict.ACCEPTED else Outcome(report.verdict, ("screening rejected",))
        decision = subject.covering()
        if decision is None:
            return Outcome(Verdict.NEEDS_REVIEW, review=report.review or ("a maintainer's review",))
        if decision.verdict is ReviewVerdict.APPROVE:
            return ACCEPT
        return Outcome(Verdict.REJECTED, (f"maintainer review: {decision_text(decision)}",))


REVIEW = ReviewRule()


def reviewed(report: ScreeningReport, decisions: Iterable[ReviewDecision]) -> ScreeningReport:
    """The report with its covering decision applied: the verdict it leads to, and the decision in `reviews`.

    A report that does not need review is returned as it is.
    """
    if report.verdict is not Verdict.NEEDS_REVIEW:
        return report
    subject = ReviewSubject(report, tuple(decisions))
    decision = subject.covering()
    if decision is None:
        return report
    return report.model_copy(update={"verdict": REVIEW.evaluate(subject).verdict, "reviews": (decision,)})


def decisions_digest(decisions: Sequence[ReviewDecision]) -> str:
    """A digest of a repository's decisions: part of the screening cache key, so a new decision re-decides."""
    raw = "|".join(sorted(f"{d.decision_id}:{d.verdict.value}" for d in decisions))
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def new_decision(
    report: ScreeningReport,
    verdict: ReviewVerdict,
    reviewer: str,
    reason: str,
    flow_run_id: str | None = None,
) -> ReviewDecision:
    """A decision on `report`'s scope; one made in a flow run has that run's id (so recording it twice is one)."""
    decision_id = f"run-{flow_run_id}" if flow_run_id else f"cli-{uuid4().hex}"
    return ReviewDecision(
        decision_id=decision_id,
        scope=scope_of(report),
        verdict=verdict,
        reviewer=reviewer.strip(),
        reason=reason.strip(),
        flow_run_id=flow_run_id,
    )


# ------------------------------------------------------------------------------------------ expiry


def request_expiry(asked_at: datetime, policy: ReviewSettings) -> datetime:
    """When a review request asked at `asked_at` expires."""
    return asked_at + policy.expire_after


@dataclass(frozen=True)
class RequestAge:
    """A pending request (its row) seen at `now`."""

    row: ModelRow
    now: datetime


def _expired(subject: RequestAge) -> str | None:
    expires = subject.row.review_expires_at
    if expires is None or subject.now < expires:
        return None
    return f"review request expired unanswered at {expires:%Y-%m-%d %H:%M} UTC"


REQUEST_EXPIRY = Check(_expired)
"""accepted = the request still waits; rejected = it expired (the next weekly run asks again)."""


def expired(row: ModelRow, now: datetime | None = None) -> str | None:
    """Why `row`'s request expired, or None while it still waits."""
    outcome = REQUEST_EXPIRY.evaluate(RequestAge(row, now or utcnow()))
    return outcome.reasons[0] if outcome.reasons else None
