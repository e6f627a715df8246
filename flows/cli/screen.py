"""`curate screen REPO_ID [--revision SHA]`: stage 2 for one repository, one line per finding."""

from __future__ import annotations

import typer
from rich.markup import escape

from flows.cli.context import settings
from flows.cli.output import JsonOption, console, emit
from flows.cli.params import repo_id_argument, revision_option
from registry.schema import ScreeningReport, Verdict
from scanners.policy import disposition

_VERDICT_STYLE = {Verdict.ACCEPTED: "green", Verdict.NEEDS_REVIEW: "yellow", Verdict.REJECTED: "red"}


def finding_lines(report: ScreeningReport) -> list[str]:
    """One plain line per finding: what it leads to, its code, where, and why."""
    lines = []
    for f in report.findings:
        effect = disposition(f).value
        where = f" [{f.path}]" if f.path else ""
        lines.append(f"{effect:<12} {f.severity.value:<8} {f.code}{where}: {f.message}")
    return lines


def render(report: ScreeningReport) -> None:
    style = _VERDICT_STYLE[report.verdict]
    lic = report.license
    console.print(
        f"[bold]{escape(report.ref.repo_id)}[/] @ {report.ref.revision[:12]}: [bold {style}]{report.verdict.value}[/]"
    )
    console.print(
        f"licence: {escape(lic.spdx or '-')} (declared {escape(lic.declared or '-')}, file "
        f"{escape(lic.file or '-')})"
        f"  formats: {', '.join(report.weight_formats) or '-'}  bytes read: {report.bytes_read}"
    )
    for f, line in zip(report.findings, finding_lines(report), strict=True):
        console.print(f"  [{_VERDICT_STYLE[disposition(f)]}]{escape(line)}[/]", soft_wrap=True)
    if report.review:
        console.print("[yellow]a maintainer must review:[/]")
        for item in report.review:
            console.print(f"  - {escape(item)}", soft_wrap=True)


def screen(
    repo_id: str = repo_id_argument(),
    revision: str | None = revision_option(),
    record: bool = typer.Option(False, "--record", help="Also store the report in the catalog database."),
    as_json: bool = JsonOption,
) -> None:
    """Screen one repository (licence, custom code, formats, headers, secrets, access) from metadata only."""
    from registry.hub import hub_source
    from scanners.screen import screen_repo

    current = settings()
    source = hub_source(current.hub)
    try:
        with console.status(f"screening {escape(repo_id)} on {current.hub.endpoint} ...", spinner="dots"):
            report = screen_repo(source, repo_id, revision, current)
    finally:
        source.close()
    if record:
        from registry.catalog import CatalogStore

        with CatalogStore.from_settings(current) as store:
            store.record_screening(report)
    emit(report, as_json, lambda: render(report))


def register(app: typer.Typer) -> None:
    app.command("screen")(screen)
