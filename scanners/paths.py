"""Hostile file names: traversal, absolute paths, control characters, backslashes, unicode tricks, long names.

File names come from the repository and are treated as hostile everywhere: `display_path` is the only form in
which a name is put into a message, a log line or a report.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from registry import finding_codes as codes
from registry.schema import Finding, Severity

SCANNER = "paths"
MAX_PATH_BYTES = 1024
MAX_COMPONENT_BYTES = 255
_DISPLAY_LIMIT = 160


def display_path(path: str) -> str:
    """A printable, bounded rendering of a hostile name: non-printable and non-ASCII characters escaped."""
    rendered = path.encode("ascii", "backslashreplace").decode("ascii")
    rendered = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in rendered)
    if len(rendered) > _DISPLAY_LIMIT:
        rendered = rendered[: _DISPLAY_LIMIT - 15] + f"...({len(path)} chars)"
    return rendered


def _finding(code: str, severity: Severity, path: str, why: str) -> Finding:
    shown = display_path(path)
    return Finding(
        scanner=SCANNER,
        code=code,
        severity=severity,
        message=f"file name {shown!r} {why}; a hostile name could write outside the download directory",
        path=shown,
    )


def check_path(path: str) -> list[Finding]:
    """Every problem with one repository file name (empty when it is a plain relative path)."""
    found: list[Finding] = []
    parts = path.replace("\\", "/").split("/")
    if ".." in parts or path in ("", "."):
        found.append(_finding(codes.PATH_TRAVERSAL, Severity.CRITICAL, path, "climbs out of the repository ('..')"))
    if path.startswith(("/", "\\")) or (len(path) > 1 and path[1] == ":" and path[0].isalpha()):
        found.append(_finding(codes.PATH_ABSOLUTE, Severity.CRITICAL, path, "is absolute"))
    if "\\" in path:
        found.append(
            _finding(codes.PATH_BACKSLASH, Severity.HIGH, path, "contains a backslash (a separator on Windows)")
        )
    if any(unicodedata.category(c) == "Cc" for c in path):
        found.append(_finding(codes.PATH_CONTROL_CHARS, Severity.HIGH, path, "contains control characters"))
    format_chars = any(unicodedata.category(c) in ("Cf", "Co", "Cs", "Cn") for c in path)
    if format_chars or unicodedata.normalize("NFKC", path) != path:
        found.append(
            _finding(
                codes.PATH_UNICODE,
                Severity.HIGH,
                path,
                "contains invisible, bidirectional or look-alike unicode characters (it is not NFKC-normal)",
            )
        )
    encoded = path.encode("utf-8", "surrogatepass")
    if len(encoded) > MAX_PATH_BYTES or any(
        len(p.encode("utf-8", "surrogatepass")) > MAX_COMPONENT_BYTES for p in parts
    ):
        found.append(
            _finding(
                codes.PATH_TOO_LONG,
                Severity.HIGH,
                path,
                f"is too long ({len(encoded)} bytes; limits {MAX_PATH_BYTES} per path, {MAX_COMPONENT_BYTES} per part)",
            )
        )
    return found


def scan_paths(paths: Iterable[str]) -> list[Finding]:
    """Findings for every hostile name among `paths`."""
    return [f for path in paths for f in check_path(path)]


def is_safe(path: str) -> bool:
    return not check_path(path)
