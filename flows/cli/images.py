"""`curate images build|list|verify|rescan`: runtime images (stage 3)."""

from __future__ import annotations

import typer
from rich.table import Table

from flows.cli.context import settings
from flows.cli.exit_codes import ExitCode, classify
from flows.cli.output import JsonOption, console, emit, emit_rows, err_console, fail
from flows.cli.params import checked
from flows.cli.services import check_docker, check_registry, prefect_api
from registry.catalog import CatalogStore
from registry.image_signatures import ImageVerificationError, verify_image
from registry.keys import signing_key
from registry.oci import ImageName, OciError
from registry.schema import RuntimeImage

images_app = typer.Typer(help="Build, scan, sign and verify runtime images.", no_args_is_help=True)


def _images_table(images: list[RuntimeImage]) -> Table:
    table = Table(title="Runtime images")
    for column in ("runtime", "version", "reference", "digest", "scan", "signed", "built"):
        table.add_column(column, overflow="fold")
    for image in images:
        scan = image.scan
        verdict = "-" if scan is None else ("[green]pass[/]" if scan.passed else "[red]FAIL[/]")
        counts = "" if scan is None else " " + ", ".join(f"{k}:{v}" for k, v in scan.vulnerabilities.items())
        table.add_row(
            image.runtime,
            image.version,
            image.reference,
            image.digest[:19],
            verdict + counts,
            "yes" if image.signature else "no",
            image.built_at.strftime("%Y-%m-%d %H:%M"),
        )
    return table


@images_app.command("build")
def build(
    runtime: list[str] | None = typer.Option(
        None,
        "--runtime",
        "-r",
        help="Runtime to build (repeatable); default: images.runtimes. GPU images (vllm, sglang) only when named.",
    ),
    force: bool = typer.Option(False, "--force", help="Rebuild even when the recipe digest is unchanged."),
    as_json: bool = JsonOption,
) -> None:
    """Build, push, scan, gate, sign, verify and record runtime images (flow `build-runtime-images`)."""
    current = settings()
    engine = check_docker()
    check_registry(current)
    err_console.print(f"[dim]registry {current.images.registry}, engine {engine}[/]")
    from flows.build import ImageOutcome, build_runtime_images

    with prefect_api(), err_console.status(_build_note(list(runtime or []))):
        outcomes: list[ImageOutcome] = build_runtime_images(
            runtimes=list(runtime or []) or None,
            force=force,
            fail_on_gate=False,
            settings_overrides=_overrides(),
        )

    def render() -> None:
        table = Table(title="Image builds")
        for column in ("runtime", "reference", "built", "gate", "reason"):
            table.add_column(column, overflow="fold")
        for o in outcomes:
            gate_text = "[green]published[/]" if o.passed else "[red]not published[/]"
            table.add_row(o.runtime, o.reference or "-", "yes" if o.built else "reused", gate_text, o.reason)
        console.print(table)

    emit(outcomes, as_json, render)
    if any(not o.passed and "disabled" not in o.reason for o in outcomes):
        raise typer.Exit(ExitCode.FAILED)


def _build_note(runtimes: list[str]) -> str:
    from builders.recipes import all_recipes

    named = ", ".join(runtimes) or "images.runtimes"
    recipes = all_recipes()
    if any(r in recipes and recipes[r].transient_build for r in runtimes):
        return f"building {named}: a CUDA image fetches and installs several GB (tens of minutes; see docs/images.md)"
    return f"building {named} (the first build of an image takes a few minutes)"


def _overrides() -> dict[str, object]:
    from flows.cli.context import STATE

    return {k: (str(v) if k == "data_dir" else v) for k, v in STATE.overrides.items()}


@images_app.command("list")
def list_images(
    runtime: str | None = typer.Option(None, "--runtime", "-r", help="Only this runtime."),
    as_json: bool = JsonOption,
) -> None:
    """List recorded (scanned, signed, verified) images, newest first."""
    with CatalogStore.from_settings(settings()) as store:
        images = store.images(runtime)

    emit_rows(images, as_json, "No images recorded: run `curate images build`.", lambda: _images_table(images))


@images_app.command("verify")
def verify(
    reference: str = typer.Argument(
        ..., help="Image reference: repo:tag, or repo@sha256:... (pinned).", callback=checked(ImageName.parse, OciError)
    ),
    as_json: bool = JsonOption,
) -> None:
    """Verify an image's signature with the pipeline key (and, for a recorded tag, its recorded digest)."""
    current = settings()
    with CatalogStore.from_settings(current) as store:
        recorded = store.image(reference)
    expected = recorded.digest if recorded is not None else None
    try:
        key = signing_key(current)
        digest = verify_image(reference, key.public_key(), expected_digest=expected)
    except ImageVerificationError as exc:
        if as_json:
            emit({"reference": reference, "verified": False, "error": str(exc), "image": recorded}, True, lambda: None)
        raise fail(str(exc), classify(exc)) from exc
    result = {"reference": reference, "verified": True, "digest": digest, "key_id": key.key_id, "image": recorded}
    emit(result, as_json, lambda: console.print(f"[green]verified[/] {reference} -> {digest} (key {key.key_id[:16]})"))


@images_app.command("rescan")
def rescan(as_json: bool = JsonOption) -> None:
    """Re-scan every recorded image digest; flag catalog entries using a now failing image (`rescan-images`)."""
    from flows.build import rescan_images

    with prefect_api(), err_console.status("re-scanning images"):
        outcomes = rescan_images(settings_overrides=_overrides())

    def render() -> None:
        table = Table(title="Image rescan")
        for column in ("image", "gate", "blocking", "flagged entries"):
            table.add_column(column, overflow="fold")
        for o in outcomes:
            gate_text = "[green]pass[/]" if o.passed else f"[red]FAIL[/] {o.error}"
            table.add_row(o.reference, gate_text, ", ".join(o.blocking) or "-", ", ".join(o.flagged_entries) or "-")
        console.print(table)

    emit(outcomes, as_json, render)


def register(app: typer.Typer) -> None:
    app.add_typer(images_app, name="images")
