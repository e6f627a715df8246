"""`curate stage`: stage 4 on its own (download, verify, sign, stage weights to every region)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from flows.cli.context import settings
from flows.cli.exit_codes import ExitCode
from flows.cli.output import JsonOption, console, emit, err_console, fail
from flows.cli.params import region_option, repo_id_argument, revision_option
from flows.cli.services import check_hub, prefect_api
from registry.schema import StagedWeights

if TYPE_CHECKING:
    from flows.stage_progress import ProgressEvent


def staged_table(weights: StagedWeights) -> Table:
    table = Table(title=f"{weights.ref.repo_id}@{weights.ref.revision[:12]} staged", show_lines=False)
    for column in ("region", "location", "verified"):
        table.add_column(column, overflow="fold")
    for region, copy in weights.regions.items():
        verified = copy.verified_at.isoformat(timespec="seconds") if copy.verified_at else "-"
        table.add_row(region, copy.container_url, verified)
    return table


def files_table(weights: StagedWeights) -> Table:
    table = Table(title=f"{len(weights.files)} files, {weights.total_bytes:,} bytes", show_lines=False)
    for column in ("file", "bytes", "sha256"):
        table.add_column(column, overflow="fold")
    for f in weights.files:
        table.add_row(f.name, f"{f.size:,}", f.sha256[:16])
    if weights.signature is not None:
        signature = weights.signature
        table.caption = f"signed by key {signature.key_id[:16]}, signature {signature.reference}"
    return table


class _Bars:
    """Rich progress bars fed by the flow's in-process progress events (one bar per phase and region)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.bars: dict[tuple[str, str], TaskID] = {}

    def __call__(self, event: ProgressEvent) -> None:
        if not event.total:  # step boundaries carry no bytes
            return
        key = (event.phase, event.region)
        if key not in self.bars:
            self.bars[key] = self.progress.add_task(f"{event.phase:>8} {event.region}", total=event.total)
        self.progress.update(self.bars[key], advance=event.advance)


_REPO = repo_id_argument()
_REVISION = revision_option("Commit sha to stage (default: the main branch's head).")
_REGION = region_option()
_FORCE = typer.Option(
    False, "--force", help="Stage again from the Hub with a new signature, even if the catalog says it is staged."
)
_VERIFY = typer.Option(
    False,
    "--verify",
    help="When already staged: re-hash every blob in every region (not only the signature, manifests and sizes) "
    "and repair what fails from a verified copy.",
)


def stage(
    repo_id: str = _REPO,
    revision: str | None = _REVISION,
    region: list[str] | None = _REGION,
    force: bool = _FORCE,
    verify: bool = _VERIFY,
    as_json: bool = JsonOption,
) -> None:
    """Download, verify, sign and stage a model's safetensors weights to every configured region."""
    current = settings()
    unknown = sorted(set(region or ()) - set(current.storage.regions))
    if unknown:
        configured = ", ".join(sorted(current.storage.regions)) or "none"
        raise fail(f"region {unknown[0]} is not in [storage.regions] (configured: {configured})", ExitCode.USAGE)
    with console.status(f"checking the Hub at {current.hub.endpoint} ...", spinner="dots"):
        check_hub(current)
        from flows.stage import stage_weights
        from flows.stage_progress import add_progress_listener
    overrides = {"hub": {"endpoint": current.hub.endpoint}, "data_dir": str(current.data_dir)}
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=as_json,
    )
    remove = add_progress_listener(_Bars(progress))
    try:
        with prefect_api(), progress:
            weights = stage_weights(
                repo_id, revision=revision, overrides=overrides, regions=region, force=force, verify=verify
            )
    finally:
        remove()

    def render() -> None:
        console.print(staged_table(weights))
        console.print(files_table(weights))

    emit(weights, as_json, render)


def register(app: typer.Typer) -> None:
    app.command("stage")(stage)
