"""The decisions package's errors: one hierarchy rooted at `DecisionError`, messages that say what to do."""

from __future__ import annotations


class DecisionError(Exception):
    """Root of every error raised by the decisions package."""


class PublicationRefusedError(DecisionError):
    """An entry was asked for although the publication gate refuses the model; the message lists every reason."""
