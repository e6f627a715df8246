"""Command-line parameters that carry identifiers, checked as they are parsed with the rules of
`registry/identifiers.py`: a malformed repo id, revision, entry id or region name is a usage error (exit 2) before
any command runs, and never reaches a URL, a path or a blob name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer

from registry.identifiers import (
    InvalidIdentifierError,
    check_entry_id,
    check_region,
    check_repo_id,
    check_revision,
    shown,
)

TASKS = ("chat", "embeddings", "automatic-speech-recognition", "image-text-to-text")
"""`validators.conformance.TASKS`, repeated so that parsing options imports no validator (a test asserts they agree)."""


def one_of(*allowed: str) -> Callable[[Any], Any]:
    """A typer callback accepting only `allowed` (or None)."""

    def callback(value: Any) -> Any:
        if value is not None and value not in allowed:
            raise typer.BadParameter(f"{shown(value)} is not one of {', '.join(allowed)}")
        return value

    return callback


def checked(
    rule: Callable[[str], object], errors: type[Exception] | tuple[type[Exception], ...] = InvalidIdentifierError
) -> Callable[[Any], Any]:
    """A typer callback: the value (or each value of a repeatable option) must pass `rule`; its `errors` become a
    usage error."""

    def callback(value: Any) -> Any:
        values = value if isinstance(value, list | tuple) else [] if value is None else [value]
        try:
            for item in values:
                rule(item)
        except errors as exc:
            raise typer.BadParameter(str(exc)) from exc
        return value

    return callback


def repo_id_argument(help_text: str = "The model repository, org/name.") -> Any:
    return typer.Argument(..., help=help_text, metavar="REPO_ID", callback=checked(check_repo_id))


def revision_option(help_text: str = "Commit sha or branch (default: the current head of main).") -> Any:
    return typer.Option(None, "--revision", help=help_text, callback=checked(check_revision))


def entry_id_argument() -> Any:
    return typer.Argument(
        ...,
        help="Entry id, e.g. huggingfacetb--smollm2-135m-instruct.",
        metavar="ENTRY_ID",
        callback=checked(check_entry_id),
    )


def region_option() -> Any:
    return typer.Option(
        None, "--region", help="Stage to this region only; repeatable (default: all).", callback=checked(check_region)
    )
