"""Shared output helpers: `--json` prints records as stable JSON, otherwise a rich view."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import typer
from pydantic import BaseModel
from rich.console import Console

from flows.cli.exit_codes import CliError, ExitCode

# Not a terminal (CI logs, pipes): rich would wrap tables at 80 columns; use a width that keeps rows on one line.
_WIDTH = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 180
console = Console(width=_WIDTH)
err_console = Console(stderr=True, width=_WIDTH)

JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON (shape documented in docs/cli.md).")


def to_jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    return value


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(to_jsonable(value), indent=2, sort_keys=False) + "\n")


def emit(value: Any, as_json: bool, render: Callable[[], None]) -> None:
    """Print `value` as JSON when asked, else call `render` for the rich view."""
    if as_json:
        print_json(value)
    else:
        render()


def fail(message: str, code: ExitCode = ExitCode.FAILED) -> CliError:
    """The error to raise for a failure the user can act on: the boundary prints `message` in one line and exits
    with `code`."""
    return CliError(message, code)


def emit_rows(rows: Sequence[Any], as_json: bool, empty_note: str, table: Callable[[], Any]) -> None:
    """`--json`: the rows; else the table, or a dim note saying what to run when there are none."""

    def render() -> None:
        console.print(table() if rows else f"[dim]{empty_note}[/]")

    emit(rows, as_json, render)
