"""The scanners package's errors: one hierarchy rooted at `ScannerError`, messages that say what to do."""

from __future__ import annotations


class ScannerError(Exception):
    """Root of every error raised by the scanners package."""


class ScreeningError(ScannerError):
    """A repository could not be screened at all (e.g. it does not exist at that revision).

    Findings about hostile or broken content are never raised: they are returned as `Finding`s. This error is
    for the cases where there is nothing to screen; the message says what to check.
    """

    def __init__(self, message: str, *, repo_id: str | None = None) -> None:
        super().__init__(message)
        self.repo_id = repo_id
