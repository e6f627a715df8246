"""Screening policy: turns findings into a verdict (`accepted`, `needs-review` naming what to review,
`rejected`).

In the spirit of sigstore-python's verification policies, a policy is anything with `evaluate(subject)`, and
policies compose: `AllOf` holds when every member holds (the worst verdict wins), `AnyOf` when one does (the
best verdict wins; this is how a remediation such as the remote-code allow-list lifts a rejection).

    policy = AllOf(
        ByDisposition(exclude=("remote-code.",)),
        AnyOf(ByDisposition(only=("remote-code.",)), AllowRepos(settings.screening.allow_remote_code)),
    )
    outcome = policy.evaluate(Subject(repo_id, findings))
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from registry.schema import Finding, Severity, Verdict
from registry.settings import Settings
from scanners import codes

_RANK = {Verdict.ACCEPTED: 0, Verdict.NEEDS_REVIEW: 1, Verdict.REJECTED: 2}

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


def worst(verdicts: Iterable[Verdict]) -> Verdict:
    return max(verdicts, key=_RANK.__getitem__, default=Verdict.ACCEPTED)


def best(verdicts: Iterable[Verdict]) -> Verdict:
    return min(verdicts, key=_RANK.__getitem__, default=Verdict.ACCEPTED)


def describe(finding: Finding) -> str:
    """One line naming a finding: `code (path): message`."""
    where = f" ({finding.path})" if finding.path else ""
    return f"{finding.code}{where}: {finding.message}"


@dataclass(frozen=True)
class Subject:
    """What a policy judges: one repository's findings."""

    repo_id: str
    findings: tuple[Finding, ...]


@dataclass(frozen=True)
class Outcome:
    """A policy's answer: the verdict, why it is not accepted (reasons), and what a maintainer must review."""

    verdict: Verdict
    reasons: tuple[str, ...] = ()
    review: tuple[str, ...] = ()


ACCEPT = Outcome(Verdict.ACCEPTED)


@runtime_checkable
class Policy(Protocol):
    """Anything that judges a subject. Implementations are pure and composable."""

    def evaluate(self, subject: Subject) -> Outcome: ...


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


@dataclass(frozen=True)
class Fixed:
    """Always the same outcome (a building block for tests and for forcing a decision)."""

    outcome: Outcome = ACCEPT

    def evaluate(self, subject: Subject) -> Outcome:
        return self.outcome


class AllOf:
    """Holds when every member holds: the worst verdict wins; reasons and review items are all kept."""

    def __init__(self, *policies: Policy) -> None:
        if not policies:
            raise ValueError("AllOf needs at least one policy")
        self.policies = policies

    def evaluate(self, subject: Subject) -> Outcome:
        outcomes = [p.evaluate(subject) for p in self.policies]
        verdict = worst(o.verdict for o in outcomes)
        return Outcome(
            verdict,
            tuple(r for o in outcomes for r in o.reasons),
            tuple(r for o in outcomes for r in o.review) if verdict is not Verdict.ACCEPTED else (),
        )


class AnyOf:
    """Holds when one member holds: the best verdict wins, with that member's reasons and review items."""

    def __init__(self, *policies: Policy) -> None:
        if not policies:
            raise ValueError("AnyOf needs at least one policy")
        self.policies = policies

    def evaluate(self, subject: Subject) -> Outcome:
        outcomes = [p.evaluate(subject) for p in self.policies]
        chosen = min(outcomes, key=lambda o: _RANK[o.verdict])
        if chosen.verdict is Verdict.ACCEPTED:
            return ACCEPT
        # Nothing holds fully: keep the reasons of every member at the chosen level, so nothing is hidden.
        same = [o for o in outcomes if o.verdict is chosen.verdict]
        return Outcome(
            chosen.verdict,
            tuple(dict.fromkeys(r for o in same for r in o.reasons)),
            tuple(dict.fromkeys(r for o in same for r in o.review)),
        )


REMOTE_CODE = ("remote-code.",)


def default_policy(settings: Settings) -> Policy:
    """The policy of curation.toml: each finding by its disposition; remote code lifted by the allow-list."""
    return AllOf(
        ByDisposition(exclude=REMOTE_CODE),
        AnyOf(ByDisposition(only=REMOTE_CODE), AllowRepos(tuple(settings.screening.allow_remote_code))),
    )
