"""What `curate verify` reports about one published entry (validators/verification.py makes it)."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from registry.schema import Record, ReviewDecision, utcnow


class VerificationCheck(Record):
    """One check of `curate verify`: what was checked, whether it held, and why not."""

    name: str = Field(description="entry-signature, index, weights:<region>, image:<runtime>, binding:<template>")
    passed: bool
    detail: str = ""


class VerificationReport(Record):
    """`curate verify ENTRY_ID --json`: every check of one published entry; `ok` only if all of them held."""

    entry_id: str
    repo_id: str = ""
    revision: str = ""
    entry_digest: str = ""
    key_id: str = ""
    key_source: str = Field(default="", description="where the trusted public key came from (a path)")
    key_pinned: bool = Field(default=False, description="true when the key was given explicitly (--public-key)")
    checks: tuple[VerificationCheck, ...] = ()
    ok: bool = False
    verified_at: datetime = Field(default_factory=utcnow)
    approvals: tuple[ReviewDecision, ...] = Field(
        default=(), description="the maintainer approvals in the entry's (signed) provenance"
    )
