"""`curate run` (the weekly pipeline) and `curate rerun REPO_ID` (one model, by hand)."""

from __future__ import annotations

import typer

from flows.cli.context import settings
from flows.cli.output import JsonOption, console, emit
from flows.cli.params import one_of, repo_id_argument, revision_option
from flows.cli.services import check_hub, prefect_api
from registry.schema import StageName

STAGES = tuple(s.value for s in StageName if s not in (StageName.BUILD, StageName.DERIVE))
"""The stages `rerun --from-stage` accepts: flows.curate.STAGE_ORDER, which costs seconds to import (a test checks
the two agree). Derive is redone with staging."""


def _overrides() -> dict[str, object]:
    current = settings()
    return {"hub": {"endpoint": current.hub.endpoint}, "data_dir": str(current.data_dir.resolve())}


def run(
    limit: int | None = typer.Option(
        None, "--limit", "-n", min=1, max=1000, help="How many trending models to consider."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Run the weekly curation pipeline once, now, on the configured policy."""
    with console.status("running the weekly curation pipeline ...", spinner="dots"):
        check_hub(settings())
        from flows.curate import weekly_curation

        with prefect_api():
            summary = weekly_curation(overrides=_overrides(), limit=limit)

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
    repo_id: str = repo_id_argument("The model to curate again, e.g. HuggingFaceTB/SmolLM2-135M-Instruct."),
    revision: str | None = revision_option(),
    from_stage: str = typer.Option(
        "discover",
        "--from-stage",
        help="Redo this stage and the later ones: discover|screen|stage|validate|publish.",
        callback=one_of(*STAGES),
    ),
    as_json: bool = JsonOption,
) -> None:
    """Curate one model now, at its current head or a given revision, whatever its trending rank."""
    with console.status(f"re-curating {repo_id} ...", spinner="dots"):
        check_hub(settings())
        from flows.curate import rerun_model

        with prefect_api():
            candidate = rerun_model(repo_id=repo_id, revision=revision, from_stage=from_stage, overrides=_overrides())
    line = f"{candidate.repo_id} pinned to {candidate.revision}: {candidate.reason}"
    emit(candidate, as_json, lambda: console.print(line))


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("rerun")(rerun)
