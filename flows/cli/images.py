"""`curate images build|list|verify|rescan`: runtime images (stage 3)."""

from __future__ import annotations

import typer
from pydantic import BaseModel, ConfigDict, Field
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
from registry.runtimes import Runtime, all_runtimes
from registry.runtimes.pins import Pins, save_pins
from registry.schema import RuntimeImage
from registry.upstream import UpstreamSource, pin_upstream, pinned_runtimes, pins_path, recorded_pins, upstream_sources

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


class RuntimeImageRow(BaseModel):
    """One runtime in `curate images list`: the image cells of it run on now (digest), or why there is none."""

    model_config = ConfigDict(frozen=True)

    runtime: str
    version: str
    source: str = Field(description="built-here or upstream (registry/runtimes/)")
    vendors: tuple[str, ...] = Field(description="accelerator vendors the runtime supports")
    available: bool
    reference: str | None = None
    digest: str | None = None
    reason: str = Field(default="", description='"not available: <why>" when there is no image')
    unavailable_vendors: dict[str, str] = Field(
        default_factory=dict, description="vendor -> why the runtime has no image for it (e.g. no ROCm build)"
    )
    image: RuntimeImage | None = None


def runtime_rows(
    images: dict[str, RuntimeImage | None],
    runtimes: dict[str, Runtime] | None = None,
    served: dict[str, set[str]] | None = None,
) -> list[RuntimeImageRow]:
    """Every declared runtime (`runtimes`: with the policy's upstream pins) with its current signed image (from
    `images`: runtime -> newest signed), or why it has none: built here but not built yet, an upstream image that
    is not pinned by digest, or one pinned but not mirrored and wrapped yet (`served`: runtime -> the vendors a
    signed image serves, so an upstream runtime wrapped for one vendor says which others are not)."""
    rows: list[RuntimeImageRow] = []
    for name, runtime in (runtimes or all_runtimes()).items():
        image = images.get(name)
        gaps = {v: why for v in runtime.vendors if (why := runtime.image_unavailable(v)) is not None}
        if image is not None:
            reason = ""
            if served is not None and not runtime.built_here:  # a wrapper serves its upstream image's vendor only
                wrap = f"pinned, not mirrored and wrapped yet; run `curate images build --runtime {name}`"
                gaps |= {v: wrap for v in runtime.vendors if v not in gaps and v not in served.get(name, set())}
        elif runtime.built_here or len(gaps) < len(runtime.vendors):
            verb = "built" if runtime.built_here else "mirrored and wrapped"
            reason = f"not available: not {verb} yet; run `curate images build --runtime {name}`"
        else:
            reason = "not available: " + "; ".join(dict.fromkeys(gaps.values()))
        rows.append(
            RuntimeImageRow(
                runtime=name,
                version=image.version if image is not None else runtime.version,
                source="built-here" if runtime.built_here else "upstream",
                vendors=runtime.vendors,
                available=image is not None,
                reference=image.reference if image is not None else None,
                digest=image.digest if image is not None else None,
                reason=reason,
                unavailable_vendors=gaps,
                image=image,
            )
        )
    return rows


def _runtimes_table(rows: list[RuntimeImageRow]) -> Table:
    table = Table(title="Runtime images")
    for column in ("runtime", "version", "source", "digest / why not", "vendors without an image"):
        table.add_column(column, overflow="fold")
    for row in rows:
        state = f"[green]{row.digest}[/]" if row.available else f"[yellow]{row.reason}[/]"
        gaps = "; ".join(f"{vendor}: {why}" for vendor, why in row.unavailable_vendors.items()) or "-"
        table.add_row(row.runtime, row.version, row.source, state, gaps if row.available else "-")
    return table


@images_app.command("list")
def list_images(
    runtime: str | None = typer.Option(None, "--runtime", "-r", help="Only this runtime."),
    history: bool = typer.Option(False, "--history", help="Every recorded image, newest first, instead."),
    as_json: bool = JsonOption,
) -> None:
    """Every runtime with the digest its cells run on, or "not available: <why>"; `--history`: every recorded
    (scanned, signed, verified) image."""
    from flows.validate import current_image

    policy = settings()
    with CatalogStore.from_settings(policy) as store:
        if history:
            images = store.images(runtime)
        else:
            current = {name: current_image(store, name) for name in all_runtimes()}
            served = {
                name: {v for v in rt.vendors if current_image(store, name, v)} for name, rt in all_runtimes().items()
            }
    if history:
        emit_rows(images, as_json, "No images recorded: run `curate images build`.", lambda: _images_table(images))
        return
    declared = pinned_runtimes(policy.images)
    rows = [row for row in runtime_rows(current, declared, served) if runtime is None or row.runtime == runtime]
    emit_rows(rows, as_json, f"No runtime {runtime!r} (registry/runtimes/).", lambda: _runtimes_table(rows))


class PinRow(BaseModel):
    """One upstream image pinned by `curate images pin`."""

    model_config = ConfigDict(frozen=True)

    runtime: str
    vendor: str
    reference: str = Field(description="the declared upstream reference (registry/runtimes/<runtime>.py)")
    resolved_from: str = Field(description="where the tag was resolved: the reference, or images.upstream_mirror")
    digest: str
    previous: str | None = Field(description="the digest recorded before, or null")
    changed: bool
    pins_file: str


def _pin_targets(names: list[str], runtimes: dict[str, Runtime]) -> list[UpstreamSource]:
    upstream = {name: upstream_sources(runtime) for name, runtime in runtimes.items() if not runtime.built_here}
    if "all" in names:
        names = sorted(upstream)
    unknown = [name for name in names if name not in upstream]
    if unknown:
        known = ", ".join(sorted(upstream))
        raise fail(f"{', '.join(unknown)}: not a runtime with upstream images; choose {known} or all", ExitCode.USAGE)
    return [source for name in dict.fromkeys(names) for source in upstream[name]]


@images_app.command("pin")
def pin(
    runtime: list[str] = typer.Option(
        ..., "--runtime", "-r", help="Upstream runtime to pin (repeatable): tei, tensorrt-llm, nim, or all."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Resolve each upstream image's declared tag to its manifest digest (OCI distribution API, from the upstream
    registry or images.upstream_mirror) and record it in the pins file; all resolve, or nothing is written."""
    images = settings().images
    targets = _pin_targets(list(runtime), pinned_runtimes(images))
    before = recorded_pins(images)
    pins: Pins = before
    rows: list[PinRow] = []
    path = pins_path(images)
    with err_console.status(f"resolving {len(targets)} upstream image tag(s)"):
        for target in targets:
            pinned = pin_upstream(target, images)
            old = before.pins.get(f"{target.runtime}/{target.vendor}")
            previous = old.digest if old is not None and old.reference == pinned.reference else None
            if previous == pinned.digest and old is not None:
                pinned = old  # unchanged: keep when it was first pinned
            pins = pins.with_pin(target.runtime, target.vendor, pinned)
            row = PinRow(
                runtime=target.runtime,
                vendor=target.vendor,
                reference=pinned.reference,
                resolved_from=pinned.resolved_from,
                digest=pinned.digest,
                previous=previous,
                changed=previous != pinned.digest,
                pins_file=str(path),
            )
            rows.append(row)
    save_pins(pins, path)

    def render() -> None:
        table = Table(title=f"Upstream pins ({path})")
        for column in ("runtime", "vendor", "reference", "digest", "changed"):
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(row.runtime, row.vendor, row.reference, row.digest, "yes" if row.changed else "no")
        console.print(table)

    emit(rows, as_json, render)


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
