"""The review request as `curate review list|show --json` print it: a model waiting for a maintainer's decision.

Built from the model's row (`ModelRow`, outcome needs-review) and its screening; the decisions themselves are
`ReviewDecision`s (registry/schema.py).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from registry.schema import LicenseReference, ModelRef, Record, ReviewDecision


class ReviewRequest(Record):
    """One model waiting for a maintainer: where it waits, until when, and what there is to review."""

    ref: ModelRef
    run_id: str = Field(description="the curation run that asked")
    flow_run_id: str | None = Field(default=None, description="its curate-model flow run (suspended when it waits)")
    asked_at: datetime
    expires_at: datetime | None = None
    expired: bool = False
    license: LicenseReference = Field(default_factory=LicenseReference)
    finding_codes: tuple[str, ...] = ()
    review: tuple[str, ...] = Field(default=(), description="what the maintainer must review")
    entry_id: str = Field(default="", description="the catalog entry an approval would publish (once validated)")


class ReviewShow(Record):
    """`curate review show --json`: the model's open request (if any) and every decision on the repository."""

    repo_id: str
    request: ReviewRequest | None = None
    decisions: tuple[ReviewDecision, ...] = ()


class ReviewOutcome(Record):
    """`curate review approve|reject --json`: the decision recorded, and whether it resumed the waiting run."""

    decision: ReviewDecision
    flow_run_id: str | None = None
    resumed: bool = False
    note: str = ""
