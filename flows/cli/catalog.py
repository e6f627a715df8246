"""`curate catalog list|show|runs|candidates`: what the catalog store holds; `curate catalog rotate-root`: the
TUF root key rotation of the export (registry/catalog_tuf.py)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from flows.cli.context import settings
from flows.cli.discover import candidates_table
from flows.cli.exit_codes import ExitCode
from flows.cli.output import JsonOption, console, emit, emit_rows, fail
from flows.cli.params import entry_id_argument
from registry.catalog import CatalogStore
from registry.identifiers import shown
from registry.keys import SigningKeyError
from registry.schema import Candidate, CatalogEntry, Decision, EntryStatus, StageName, StageOutcome

catalog_app = typer.Typer(help="Inspect the catalog store: published entries, runs, candidates.", no_args_is_help=True)


def _store() -> CatalogStore:
    return CatalogStore.from_settings(settings())


_OUTCOME_STYLE = {
    StageOutcome.OK: "green",
    StageOutcome.NEEDS_REVIEW: "yellow",
    StageOutcome.REJECTED: "red",
    StageOutcome.FAILED: "red",
    StageOutcome.SKIPPED: "dim",
}


def stages_table(store: CatalogStore, candidates: list[Candidate], title: str = "Models by stage") -> Table:
    """One row per candidate, one column per stage: each stage's outcome and reason at this revision."""
    stages = [s for s in StageName if s is not StageName.DISCOVER]
    results = {(c.ref, stage): store.stage_result(c.ref, stage) for c in candidates for stage in stages}
    shown = [s for s in stages if any(results[(c.ref, s)] is not None for c in candidates)]
    table = Table(title=title)
    table.add_column("repository", overflow="fold")
    table.add_column("revision")
    table.add_column("discover", overflow="fold")
    for stage in shown:
        table.add_column(stage.value, overflow="fold")
    for c in candidates:
        style = "green" if c.decision is Decision.SELECTED else "dim"
        row = [c.repo_id, c.revision[:12], f"[{style}]{c.decision.value}[/]"]
        for stage in shown:
            result = results[(c.ref, stage)]
            if result is None:
                row.append("-")
                continue
            colour = _OUTCOME_STYLE.get(result.outcome, "white")
            row.append(f"[{colour}]{result.outcome.value}[/]" + (f": {result.reason}" if result.reason else ""))
        table.add_row(*row)
    return table


def _entries_table(entries: list[CatalogEntry]) -> Table:
    table = Table(title="Catalog entries")
    for column in ("entry", "revision", "licence", "task", "templates", "regions", "status", "published"):
        table.add_column(column, overflow="fold")
    for e in entries:
        table.add_row(
            e.id,
            e.model.revision[:12],
            e.license.spdx or "-",
            e.task,
            ", ".join(t.template.id for t in e.templates) or "-",
            ", ".join(sorted(e.weights.regions)) or "-",
            e.status.value + (f" ({e.status_reason})" if e.status_reason else ""),
            e.published_at.strftime("%Y-%m-%d %H:%M"),
        )
    return table


@catalog_app.command("list")
def list_entries(
    status: EntryStatus | None = typer.Option(None, "--status", help="Only entries with this status."),
    as_json: bool = JsonOption,
) -> None:
    """List catalog entries."""
    with _store() as store:
        entries = store.entries(status)

    emit_rows(entries, as_json, "The catalog is empty: run `curate run` first.", lambda: _entries_table(entries))


@catalog_app.command("show")
def show_entry(
    entry_id: str = entry_id_argument(),
    as_json: bool = JsonOption,
) -> None:
    """Show one catalog entry in full."""
    with _store() as store:
        entry = store.entry(entry_id)
    if entry is None:
        raise fail(f"no catalog entry {shown(entry_id)}; `curate catalog list` shows the ids", ExitCode.NOT_FOUND)
    emit(entry, as_json, lambda: console.print_json(entry.model_dump_json()))


@catalog_app.command("runs")
def list_runs(limit: int = typer.Option(20, "--limit", "-n", min=1, max=10_000), as_json: bool = JsonOption) -> None:
    """List recent curation runs, newest first."""
    with _store() as store:
        runs = store.runs(limit)

    def render() -> None:
        table = Table(title="Runs")
        for column in ("run", "kind", "started", "finished", "candidates", "selected", "status"):
            table.add_column(column)
        for r in runs:
            table.add_row(
                r.run_id,
                r.kind,
                r.started_at.strftime("%Y-%m-%d %H:%M:%S"),
                r.finished_at.strftime("%H:%M:%S") if r.finished_at else "-",
                str(r.candidates),
                str(r.selected),
                r.status,
            )
        console.print(table)

    emit(runs, as_json, render)


@catalog_app.command("candidates")
def list_candidates(
    run_id: str | None = typer.Option(None, "--run", help="Run id (default: the latest run)."),
    as_json: bool = JsonOption,
) -> None:
    """List the candidates one run discovered, with each decision and its reason."""
    with _store() as store:
        if run_id is not None and store.run(run_id) is None:
            raise fail(f"no run {shown(run_id)} in the catalog; `curate catalog runs` lists them", ExitCode.NOT_FOUND)
        candidates = store.candidates(run_id)
        stages = stages_table(store, candidates)

    def render() -> None:
        console.print(candidates_table(candidates, "Candidates"))
        console.print(stages)

    emit(candidates, as_json, render)


_NEW_ROOT_KEY = typer.Option(..., "--new-key", help="PEM EC P-256 private key of the new root role (offline).")


@catalog_app.command("rotate-root")
def rotate_root(new_key: Path = _NEW_ROOT_KEY, as_json: bool = JsonOption) -> None:
    """Rotate the TUF root key: a new root version signed by the current root key and the new one."""
    from registry.catalog_export import rotate_root_key
    from registry.catalog_tuf import TufRepositoryError

    config = settings()
    try:
        synced = rotate_root_key(config, new_key)
    except (TufRepositoryError, SigningKeyError, OSError) as exc:
        raise fail(f"root rotation failed: {exc}") from exc

    def render() -> None:
        console.print(
            f"root v{synced.tuf_versions['root']} written to {synced.directory} and {len(synced.uploaded)} blob(s)"
        )
        console.print("[yellow]now set publish.tuf.root_key_path to the new key and keep it offline[/]")

    emit(synced, as_json, render)


def register(app: typer.Typer) -> None:
    app.add_typer(catalog_app, name="catalog")
