"""The screen verdict: turns one repository's findings into `accepted`, `needs-review` (naming what to review)
or `rejected`.

Rules have the shape of every decision (registry/rules.py): `evaluate(subject) -> Outcome`, composed with
`AllOf` (the worst verdict wins) and `AnyOf` (the best verdict wins; this is how a remediation such as the
remote-code allow-list lifts a rejection).

    policy = AllOf(
        ByDisposition(exclude=("remote-code.",)),
        AnyOf(ByDisposition(only=("remote-code.",)), AllowRepos(settings.screening.allow_remote_code)),
    )
    outcome = policy.evaluate(Subject(repo_id, findings))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from registry import finding_codes as codes
from registry.rules import ACCEPT, AllOf, AnyOf, Outcome, Rule, worst
from registry.schema import Finding, Severity, Verdict
from registry.settings import Settings

# The default disposition of each code. Codes not listed fall back to their severity (see `disposition`).
DISPOSITION: dict[str, Verdict] = {
    codes.LICENSE_ALLOWED: Verdict.ACCEPTED,
    codes.LICENSE_REVIEW: Verdict.NEEDS_REVIEW,
    codes.LICENSE_DENIED: Verdict.REJECTED,
    codes.LICENSE_UNKNOWN: Verdict.REJECTED,
    codes.LICENSE_MISSING: Verdict.REJECTED,
    codes.LICENSE_MISMATCH: Verdict.NEEDS_REVIEW,
    codes.LICENSE_SPOOFING: Verdict.NEEDS_REVIEW,
    codes.LICENSE_FILE_UNIDENTIFIED: Verdict.NEEDS_REVIEW,
    codes.REMOTE_CODE_AUTO_MAP: Verdict.REJECTED,
    codes.REMOTE_CODE_CROSS_REPO: Verdict.REJECTED,
    codes.REMOTE_CODE_PYTHON_FILE: Verdict.REJECTED,
    codes.REMOTE_CODE_HANDLER: Verdict.REJECTED,
    codes.REMOTE_CODE_CARD_HINT: Verdict.REJECTED,
    codes.REMOTE_CODE_ALLOWED: Verdict.ACCEPTED,
    codes.WEIGHTS_MISSING: Verdict.REJECTED,
    codes.WEIGHTS_NO_SAFETENSORS: Verdict.REJECTED,
    codes.FORMAT_PICKLE: Verdict.ACCEPTED,
    codes.FORMAT_GGUF: Verdict.ACCEPTED,
    codes.FORMAT_ONNX: Verdict.ACCEPTED,
    codes.FORMAT_OTHER: Verdict.ACCEPTED,
    codes.FORMAT_NUMPY_OBJECT: Verdict.NEEDS_REVIEW,
    codes.PICKLE_DANGEROUS_IMPORT: Verdict.REJECTED,
    codes.PICKLE_UNKNOWN_IMPORT: Verdict.NEEDS_REVIEW,
    codes.PICKLE_MALFORMED: Verdict.NEEDS_REVIEW,
    codes.PICKLE_UNSCANNED: Verdict.NEEDS_REVIEW,
    codes.ST_HEADER_TOO_LARGE: Verdict.REJECTED,
    codes.ST_HEADER_BEYOND_FILE: Verdict.REJECTED,
    codes.ST_HEADER_TRUNCATED: Verdict.REJECTED,
    codes.ST_HEADER_INVALID: Verdict.REJECTED,
    codes.ST_UNKNOWN_DTYPE: Verdict.REJECTED,
    codes.ST_SHAPE_MISMATCH: Verdict.REJECTED,
    codes.ST_OFFSET_OUT_OF_RANGE: Verdict.REJECTED,
    codes.ST_OVERLAP: Verdict.REJECTED,
    codes.ST_GAP: Verdict.REJECTED,
    codes.ST_METADATA_INVALID: Verdict.REJECTED,
    codes.ST_PARAMETER_MISMATCH: Verdict.NEEDS_REVIEW,
    codes.ST_INDEX_INVALID: Verdict.REJECTED,
    codes.ST_INDEX_MISMATCH: Verdict.REJECTED,
    codes.SECRET_FOUND: Verdict.REJECTED,
    codes.PATH_TRAVERSAL: Verdict.REJECTED,
    codes.PATH_ABSOLUTE: Verdict.REJECTED,
    codes.PATH_CONTROL_CHARS: Verdict.REJECTED,
    codes.PATH_BACKSLASH: Verdict.REJECTED,
    codes.PATH_UNICODE: Verdict.REJECTED,
    codes.PATH_TOO_LONG: Verdict.REJECTED,
    codes.NEEDS_TOKEN: Verdict.NEEDS_REVIEW,
    codes.REPO_DISABLED: Verdict.REJECTED,
    codes.REPO_NOT_FOUND: Verdict.REJECTED,
    codes.FILE_UNREADABLE: Verdict.NEEDS_REVIEW,
    codes.FILE_TOO_LARGE: Verdict.NEEDS_REVIEW,
}


def disposition(finding: Finding) -> Verdict:
    """The verdict one finding leads to by default: its code's entry, else by severity."""
    known = DISPOSITION.get(finding.code)
    if known is not None:
        return known
    if finding.severity.rank >= Severity.HIGH.rank:
        return Verdict.REJECTED
    if finding.severity is Severity.MEDIUM:
        return Verdict.NEEDS_REVIEW
    return Verdict.ACCEPTED


def describe(finding: Finding) -> str:
    """One line naming a finding: `code (path): message`."""
    where = f" ({finding.path})" if finding.path else ""
    return f"{finding.code}{where}: {finding.message}"


@dataclass(frozen=True)
class Subject:
    """What a policy judges: one repository's findings."""

    repo_id: str
    findings: tuple[Finding, ...]


Policy = Rule[Subject]
"""A screening policy: any rule over one repository's findings."""


def _matches(code: str, prefixes: Sequence[str]) -> bool:
    return any(code == p or (p.endswith(".") and code.startswith(p)) for p in prefixes)


@dataclass(frozen=True)
class ByDisposition:
    """Judges the findings it selects by their default disposition (`DISPOSITION`, else severity).

    `only` / `exclude` select codes: an exact code, or an area prefix ending in '.' (e.g. "remote-code.").
    """

    only: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def evaluate(self, subject: Subject) -> Outcome:
        reasons: list[str] = []
        review: list[str] = []
        verdict = Verdict.ACCEPTED
        for finding in subject.findings:
            if self.only and not _matches(finding.code, self.only):
                continue
            if self.exclude and _matches(finding.code, self.exclude):
                continue
            outcome = disposition(finding)
            verdict = worst((verdict, outcome))
            if outcome is Verdict.REJECTED:
                reasons.append(describe(finding))
            elif outcome is Verdict.NEEDS_REVIEW:
                review.append(describe(finding))
        return Outcome(verdict, tuple(reasons), tuple(review))


@dataclass(frozen=True)
class AllowRepos:
    """Accepts a repository named in `repos` (an explicit remediation); rejects every other."""

    repos: tuple[str, ...]
    what: str = "remote code"

    def evaluate(self, subject: Subject) -> Outcome:
        if subject.repo_id in self.repos:
            return ACCEPT
        return Outcome(Verdict.REJECTED, (f"{subject.repo_id} is not allow-listed for {self.what}",))


REMOTE_CODE = ("remote-code.",)


def default_policy(settings: Settings) -> Policy:
    """The policy of curation.toml: each finding by its disposition; remote code lifted by the allow-list."""
    return AllOf(
        ByDisposition(exclude=REMOTE_CODE),
        AnyOf(ByDisposition(only=REMOTE_CODE), AllowRepos(tuple(settings.screening.allow_remote_code))),
    )
