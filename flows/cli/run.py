"""`curate run` (the weekly pipeline) and `curate rerun REPO_ID` (one model, by hand)."""

from __future__ import annotations

import typer

from flows.cli.context import settings
from flows.cli.output import JsonOption, console, emit, fail
from registry.errors import RegistryError


def _overrides() -> dict[str, object]:
    current = settings()
    return {"hub": {"endpoint": current.hub.endpoint}, "data_dir": str(current.data_dir.resolve())}


def run(
    limit: int | None = typer.Option(None, "--limit", "-n", min=1, help="How many trending models to consider."),
    as_json: bool = JsonOption,
) -> None:
    """Run the weekly curation pipeline once, now, on the configured policy."""
    from flows.curate import weekly_curation

    try:
        with console.status("running the weekly curation pipeline ...", spinner="dots"):
            summary = weekly_curation(overrides=_overrides(), limit=limit)
    except RegistryError as exc:
        raise fail(str(exc)) from exc

    def render() -> None:
        from flows.cli.catalog import stages_table
        from registry.catalog import CatalogStore

        with CatalogStore.from_settings(settings()) as store:
            console.print(stages_table(store, store.candidates(summary.run_id), f"Run {summary.run_id}"))
        console.print(
            f"[bold]run {summary.run_id}[/]: {summary.candidates} candidates, {summary.selected} selected "
            f"({summary.status}). Published entries: [bold]curate catalog list[/]; every decision is also an "
            "artifact in the Prefect UI."
        )

    emit(summary, as_json, render)


def rerun(
    repo_id: str = typer.Argument(..., help="The model to curate again, e.g. HuggingFaceTB/SmolLM2-135M-Instruct."),
    revision: str | None = typer.Option(None, "--revision", help="Commit sha or branch (default: current head)."),
    from_stage: str = typer.Option(
        "discover", "--from-stage", help="Redo this stage and the later ones: discover|screen|stage|validate|publish."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Curate one model now, at its current head or a given revision, whatever its trending rank."""
    from flows.curate import STAGE_ORDER, rerun_model

    if from_stage not in STAGE_ORDER:
        raise fail(f"--from-stage must be one of {', '.join(STAGE_ORDER)}")

    try:
        with console.status(f"re-curating {repo_id} ...", spinner="dots"):
            candidate = rerun_model(repo_id=repo_id, revision=revision, from_stage=from_stage, overrides=_overrides())
    except RegistryError as exc:
        raise fail(str(exc)) from exc
    line = f"{candidate.repo_id} pinned to {candidate.revision}: {candidate.reason}"
    emit(candidate, as_json, lambda: console.print(line))


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("rerun")(rerun)
