"""Secrets in the repository's small text files: Trivy's secret scanner, plus a few rules of our own.

Trivy (`trivy fs --scanners secret --offline-scan`) runs over a private temporary copy of the text files,
written under neutral names (never the repository's hostile names). The built-in rules cover tokens Trivy's
defaults miss (Hugging Face, OpenAI) and keep screening working where the binary is absent. A secret's value
is never put in a finding, a log line or a report: only the rule, the file and the line.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from registry import finding_codes as codes
from registry.schema import Finding, Severity
from registry.tools import find_tool
from scanners.errors import ScannerError
from scanners.paths import display_path

SCANNER = "secrets"
TRIVY_TIMEOUT_S = 120


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    pattern: re.Pattern[str]


RULES: tuple[Rule, ...] = (
    Rule("hugging-face-token", "Hugging Face access token", re.compile(r"\bhf_[A-Za-z0-9]{30,}\b")),
    Rule("openai-api-key", "OpenAI API key", re.compile(r"\bsk-(?:proj-|svcacct-)?[A-Za-z0-9_\-]{32,}\b")),
    Rule("aws-access-key-id", "AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    Rule("github-token", "GitHub token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b")),
    Rule("slack-token", "Slack token", re.compile(r"\bxox[baprs]-[A-Za-z0-9-]{10,}\b")),
    Rule("private-key", "private key", re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----")),
    Rule(
        "azure-storage-key",
        "Azure storage account key",
        re.compile(r"AccountKey=[A-Za-z0-9+/]{80,}={0,2}"),
    ),
)
# Well-known documentation placeholders that are not secrets.
_PLACEHOLDERS = ("AKIAIOSFODNN7EXAMPLE", "hf_xxxxxxxx", "sk-xxxxxxxx")


def _finding(path: str, line: int, rule: str, title: str, source: str) -> Finding:
    shown = display_path(path)
    return Finding(
        scanner=SCANNER,
        code=codes.SECRET_FOUND,
        severity=Severity.CRITICAL,
        message=f"{shown} line {line}: {title} ({source} rule {rule}); revoke it and remove it from the repository",
        path=shown,
    )


def builtin_findings(files: Mapping[str, bytes]) -> list[Finding]:
    found: list[Finding] = []
    for path, data in files.items():
        text = data.decode("utf-8", "replace")
        for rule in RULES:
            for match in rule.pattern.finditer(text):
                if any(match.group(0).startswith(p) for p in _PLACEHOLDERS):
                    continue
                line = text.count("\n", 0, match.start()) + 1
                found.append(_finding(path, line, rule.id, rule.title, "built-in"))
    return found


def trivy_binary() -> str | None:
    return find_tool("trivy")


def trivy_findings(files: Mapping[str, bytes], *, binary: str, cache_dir: Path | None = None) -> list[Finding]:
    """Run Trivy's secret scanner offline over a neutral-named copy of `files`."""
    found: list[Finding] = []
    with tempfile.TemporaryDirectory(prefix="curate-secrets-") as tmp:
        root = Path(tmp) / "files"
        root.mkdir()
        names: dict[str, str] = {}
        for i, (path, data) in enumerate(sorted(files.items())):
            neutral = f"f{i:05d}.txt"
            (root / neutral).write_bytes(data)
            names[neutral] = path
        argv = [
            binary,
            "fs",
            "--scanners",
            "secret",
            "--format",
            "json",
            "--offline-scan",
            "--quiet",
            "--cache-dir",
            str(cache_dir or Path(tmp) / "cache"),
            str(root),
        ]
        try:
            proc = subprocess.run(argv, capture_output=True, timeout=TRIVY_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ScannerError(f"trivy secret scan failed to run ({exc}); check the trivy binary on PATH") from exc
        if proc.returncode != 0:
            raise ScannerError(
                f"trivy secret scan exited {proc.returncode}: {proc.stderr.decode(errors='replace')[-300:]}"
            )
        try:
            report = json.loads(proc.stdout or b"{}")
        except json.JSONDecodeError as exc:
            raise ScannerError(f"trivy printed no JSON report ({exc})") from exc
    for result in report.get("Results") or []:
        original = names.get(str(result.get("Target", "")).rsplit("/", 1)[-1])
        if original is None:
            continue
        for secret in result.get("Secrets") or []:
            found.append(
                _finding(
                    original,
                    int(secret.get("StartLine") or 0),
                    str(secret.get("RuleID", "?")),
                    str(secret.get("Title", "secret")),
                    "trivy",
                )
            )
    return found


def scan_secrets(files: Mapping[str, bytes], *, use_trivy: bool = True, cache_dir: Path | None = None) -> list[Finding]:
    """Secret findings in `files` (path -> bytes), one per (file, line): Trivy's, then built-in rules."""
    if not files:
        return []
    found: list[Finding] = []
    binary = trivy_binary() if use_trivy else None
    if binary:
        found.extend(trivy_findings(files, binary=binary, cache_dir=cache_dir))
    seen = {(f.path, f.message.split(":", 1)[0]) for f in found}
    for finding in builtin_findings(files):
        key = (finding.path, finding.message.split(":", 1)[0])
        if key not in seen:
            seen.add(key)
            found.append(finding)
    return found
