"""`curate discover`: stage 1 on its own."""

from __future__ import annotations

import typer
from rich.table import Table

from flows.cli.context import settings
from flows.cli.output import JsonOption, console, emit
from flows.cli.params import checked
from flows.cli.services import check_hub, prefect_api
from registry.errors import RegistryError
from registry.schema import Candidate, Decision


def candidates_table(candidates: list[Candidate], title: str) -> Table:
    table = Table(title=title, show_lines=False)
    for column in ("#", "repository", "revision", "trending", "likes", "downloads", "task", "licence", "decision"):
        table.add_column(column, overflow="fold")
    for c in candidates:
        style = "green" if c.decision is Decision.SELECTED else "yellow"
        table.add_row(
            str(c.rank) if c.rank is not None else "req",
            c.repo_id,
            c.revision[:12],
            f"{c.trending_score:.1f}",
            str(c.likes),
            str(c.downloads),
            c.pipeline_tag or "-",
            c.license or "-",
            f"[{style}]{c.decision.value}[/]: {c.reason}",
        )
    return table


def _parse_request(text: str) -> object:
    from registry.discovery import RequestedModel  # the Hub client's import costs a second: only when asked

    return RequestedModel.parse(text)


def discover(
    limit: int | None = typer.Option(None, "--limit", "-n", min=1, max=1000, help="How many trending models to fetch."),
    requested: list[str] | None = typer.Option(
        None,
        "--request",
        "-r",
        help="Also consider this model (org/name[@sha]); repeatable.",
        callback=checked(_parse_request, RegistryError),
    ),
    as_json: bool = JsonOption,
) -> None:
    """Discover trending models, pinned to commit shas, with the policy's decision for each."""
    current = settings()
    overrides = {"hub": {"endpoint": current.hub.endpoint}, "data_dir": str(current.data_dir.resolve())}
    with console.status(f"discovering trending models on {current.hub.endpoint} ...", spinner="dots"):
        check_hub(current)
        from flows.discover import discover_models

        with prefect_api():
            candidates = discover_models(overrides=overrides, limit=limit, requested=requested or None)
    title = f"Trending on {current.hub.endpoint}"
    emit(candidates, as_json, lambda: console.print(candidates_table(candidates, title)))


def register(app: typer.Typer) -> None:
    app.command("discover")(discover)
