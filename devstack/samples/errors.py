"""Errors of the sample-repository builder."""

from __future__ import annotations


class SamplesError(Exception):
    """A sample repository could not be built; the message says what to install or fix."""
