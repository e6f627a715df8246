"""The validators package's errors: one hierarchy rooted at `ValidatorError`, messages that say what to do."""

from __future__ import annotations


class ValidatorError(Exception):
    """Root of every error raised by the validators package."""


class PlannerError(ValidatorError):
    """config.json (or the safetensors metadata) cannot be planned for; the message names the missing key."""


class RuntimeLaunchError(ValidatorError):
    """A runtime process could not be started or did not become healthy; the message points at its log."""


class ConformanceError(ValidatorError):
    """The conformance suite could not run at all (bad base URL, unknown task); individual failures are
    checks."""


class EndpointUnreachableError(ValidatorError):
    """An OpenAI-compatible base URL does not answer (refused, unknown host, timed out)."""


class NotOpenAIEndpointError(ValidatorError):
    """A base URL answers, but not as an OpenAI-compatible API (GET /models is not a model list)."""


class BenchmarkError(ValidatorError):
    """The throughput benchmark could not run (bad profile, no tokenizer, server unreachable)."""
