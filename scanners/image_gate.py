"""The image gate: whether a runtime image's Trivy report lets it be signed, recorded and used.

Policy (`[images]` in curation.toml): a vulnerability of a severity in `images.fail_on_fixable` with a fixed
version available blocks, unless its id is in `images.allowed_cves` with a reason (and the allow-listing has
not expired); a secret blocks unless `images.allowed_secrets` accepts its rule in files matching a glob, with a
reason (a reviewed false positive, e.g. an SDK's docstring inside a runtime wheel); any licence in
`images.denied_licenses` blocks. Each is a rule of the one shape (registry/rules.py) over the parsed report;
`gate` returns the `ScanSummary` recorded with the image (`passed`, and every blocking id), and
`summary_markdown` renders the `image-scan-<runtime>` artifact.
"""

from __future__ import annotations

import fnmatch
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from registry.artifacts import cell
from registry.rules import AllOf, CheckAll, Rule
from registry.schema import ScanSummary, utcnow
from registry.settings import ImageSettings

SCANNER = "trivy"


@dataclass(frozen=True)
class Vulnerability:
    id: str
    severity: str
    fixable: bool


@dataclass(frozen=True)
class Secret:
    rule: str
    target: str
    """The scanned file (Trivy's result target) the secret was found in."""


@dataclass(frozen=True)
class ImageReport:
    """What the gate judges: a Trivy JSON report's vulnerabilities (one per id, package and version), secret
    rule ids and licence names."""

    vulnerabilities: tuple[Vulnerability, ...]
    secrets: tuple[Secret, ...]
    licenses: tuple[str, ...]

    @classmethod
    def parse(cls, report: dict[str, Any]) -> ImageReport:
        vulnerabilities: list[Vulnerability] = []
        secrets: list[Secret] = []
        licenses: list[str] = []
        seen: set[tuple[str, str, str]] = set()
        results = report.get("Results") or []
        for result in results if isinstance(results, list) else []:
            if not isinstance(result, dict):
                continue
            for vuln in result.get("Vulnerabilities") or []:
                vuln_id = str(vuln.get("VulnerabilityID", ""))
                key = (vuln_id, str(vuln.get("PkgName", "")), str(vuln.get("InstalledVersion", "")))
                if key not in seen:
                    seen.add(key)
                    severity = str(vuln.get("Severity", "UNKNOWN")).upper()
                    vulnerabilities.append(Vulnerability(vuln_id, severity, bool(vuln.get("FixedVersion"))))
            target = str(result.get("Target", ""))
            secrets += [Secret(str(secret.get("RuleID", "unknown")), target) for secret in result.get("Secrets") or []]
            licenses += [str(lic.get("Name", "")) for lic in result.get("Licenses") or []]
        return cls(tuple(vulnerabilities), tuple(secrets), tuple(licenses))


def _in_force(expires: str | None, today: date) -> bool:
    """An allow-listing counts until its expiry date (an unreadable date never counts)."""
    if not expires:
        return True
    try:
        return date.fromisoformat(expires) >= today
    except ValueError:
        return False


def allow_list(policy: ImageSettings, today: date) -> dict[str, str]:
    """CVE id -> reason, for the allow-listings of `images.allowed_cves` still in force `today`."""
    return {entry.id: entry.reason for entry in policy.allowed_cves if _in_force(entry.expires, today)}


def secret_allowed(policy: ImageSettings, secret: Secret, today: date) -> bool:
    """`images.allowed_secrets` accepts it: same rule, file matching the entry's glob, listing still in force."""
    return any(
        entry.rule == secret.rule and fnmatch.fnmatch(secret.target, entry.path) and _in_force(entry.expires, today)
        for entry in policy.allowed_secrets
    )


def _fixable(policy: ImageSettings, report: ImageReport) -> Iterator[Vulnerability]:
    fail_on = {s.upper() for s in policy.fail_on_fixable}
    return (v for v in report.vulnerabilities if v.severity in fail_on and v.fixable)


def fixable_vulnerabilities(policy: ImageSettings, today: date) -> Rule[ImageReport]:
    allowed = allow_list(policy, today)
    return CheckAll(lambda report: [v.id for v in _fixable(policy, report) if v.id not in allowed])


def no_secrets(policy: ImageSettings, today: date) -> Rule[ImageReport]:
    return CheckAll(lambda report: [f"secret:{s.rule}" for s in report.secrets if not secret_allowed(policy, s, today)])


def no_denied_licenses(policy: ImageSettings) -> Rule[ImageReport]:
    denied = set(policy.denied_licenses)
    return CheckAll(lambda report: [f"license:{name}" for name in report.licenses if name in denied])


def image_gate(policy: ImageSettings, today: date) -> Rule[ImageReport]:
    """The gate of `[images]`: its reasons are the blocking ids (CVE ids, `secret:<rule>`, `license:<name>`)."""
    return AllOf(fixable_vulnerabilities(policy, today), no_secrets(policy, today), no_denied_licenses(policy))


def gate(
    report: dict[str, Any],
    policy: ImageSettings,
    *,
    scanner_version: str = "",
    db_updated: datetime | None = None,
    today: date | None = None,
) -> ScanSummary:
    """Apply the image policy to a Trivy JSON report."""
    day = today or datetime.now(UTC).date()
    parsed = ImageReport.parse(report)
    outcome = image_gate(policy, day).evaluate(parsed)
    allowed = allow_list(policy, day)
    denied = set(policy.denied_licenses)
    return ScanSummary(
        scanner=SCANNER,
        scanner_version=scanner_version,
        db_updated_at=db_updated,
        vulnerabilities=dict(sorted(Counter(v.severity for v in parsed.vulnerabilities).items())),
        blocking=tuple(sorted(set(outcome.reasons))),
        allowed=tuple(
            sorted(
                {v.id for v in _fixable(policy, parsed) if v.id in allowed}
                | {f"secret:{s.rule}" for s in parsed.secrets if secret_allowed(policy, s, day)}
            )
        ),
        secrets=len(parsed.secrets),
        denied_licenses=tuple(sorted({name for name in parsed.licenses if name in denied})),
        passed=outcome.accepted,
        scanned_at=utcnow(),
    )


def allow_reasons(policy: ImageSettings) -> dict[str, str]:
    """Each allow-listing's reason, keyed as `ScanSummary.allowed` names it (a CVE id, `secret:<rule>`)."""
    reasons = {entry.id: entry.reason for entry in policy.allowed_cves}
    return reasons | {f"secret:{entry.rule}": entry.reason for entry in policy.allowed_secrets}


def summary_markdown(reference: str, summary: ScanSummary, allow_reasons: dict[str, str] | None = None) -> str:
    """A markdown table of one image's scan, for the Prefect artifact."""
    lines = [
        f"### {reference}",
        "",
        f"**Gate: {'passed' if summary.passed else 'FAILED'}** (trivy {summary.scanner_version or '?'}, "
        f"database {summary.db_updated_at.isoformat() if summary.db_updated_at else 'unknown'})",
        "",
        "| severity | count |",
        "| --- | --- |",
    ]
    lines += [f"| {severity} | {count} |" for severity, count in summary.vulnerabilities.items()] or ["| - | 0 |"]
    lines += [
        "",
        f"Secrets: {summary.secrets}. Denied licences: {', '.join(summary.denied_licenses) or 'none'}.",
    ]
    if summary.blocking:
        lines += ["", "Blocking:", *[f"- {cell(item)}" for item in summary.blocking]]
    if summary.allowed:
        reasons = allow_reasons or {}
        lines += ["", "Allow-listed:", *[f"- {cve}: {cell(reasons.get(cve, ''))}" for cve in summary.allowed]]
    return "\n".join(lines) + "\n"
