"""The builders package's errors: one hierarchy rooted at `BuildersError`; messages say what to do."""

from __future__ import annotations


class BuildersError(Exception):
    """Root of every error raised by the builders package."""


class RecipeError(BuildersError):
    """A recipe is unknown, or cannot express what was asked (e.g. tensor parallelism on a CPU runtime)."""


class ImageBuildError(BuildersError):
    """The Docker Engine could not build, tag or push an image; the message carries the build log tail."""


class NotBuildableError(ImageBuildError, RecipeError):
    """The runtime's images are upstream (registry/runtimes/), or the recipe has no build files: not built here."""


class SbomError(BuildersError):
    """The SBOM is missing, not SPDX 2.3, or does not validate with spdx-tools."""


class SigningError(BuildersError):
    """An image could not be signed, or a signature could not be stored."""
