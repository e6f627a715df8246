"""Access: gated and private repositories are screened with a token when one is configured, else they get
`access.needs-token`."""

from __future__ import annotations

from registry import finding_codes as codes
from registry.schema import Finding, Severity

SCANNER = "access"


def needs_token(repo_id: str, *, gated: bool | str, private: bool, has_token: bool, refused: bool = False) -> Finding:
    """The finding for a repository whose files cannot be read: a maintainer must supply a token."""
    what = "private" if private else f"gated ({gated})" if isinstance(gated, str) else "gated"
    if has_token and refused:
        advice = "the configured token was refused: use a token of an account that accepted the repository's terms"
    else:
        advice = "set HF_TOKEN (or CURATE_HUB__TOKEN) to a token with access and screen it again"
    return Finding(
        scanner=SCANNER,
        code=codes.NEEDS_TOKEN,
        severity=Severity.MEDIUM,
        message=f"{repo_id} is {what}; its files were not read, so only its metadata was screened: {advice}",
    )


def not_found(repo_id: str, revision: str | None, *, has_token: bool) -> Finding:
    at = f" at {revision}" if revision else ""
    hint = "check the id and the revision" if has_token else "it may be private: set HF_TOKEN if you have access"
    return Finding(
        scanner=SCANNER,
        code=codes.REPO_NOT_FOUND,
        severity=Severity.HIGH,
        message=f"{repo_id}{at} does not resolve on the Hub ({hint})",
    )


def disabled(repo_id: str) -> Finding:
    return Finding(
        scanner=SCANNER,
        code=codes.REPO_DISABLED,
        severity=Severity.HIGH,
        message=f"{repo_id} is disabled on the Hub; it cannot be curated",
    )
