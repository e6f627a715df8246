"""`curate verify ENTRY_ID`: a consumer checks one published entry end to end, fetched through TUF.

The catalog is read with `tuf.ngclient` from a pinned root (`--root`, or `publish.tuf.trusted_root`) from one
region's `catalog` container (`--region`, default the primary region) or a local export (`--export-dir`); the
client keeps what it verified under `<data_dir>/tuf-client/` so an older export served again is refused. Then
the entry signature, the signed index, the weights in every region the entry names (signature blob, key, file
set, every blob's sha256), every image (signature over the pinned digest, the build tag still on that digest)
and that each template was validated on those digests are checked with the catalog key the root delegates to.
Exit code 0 only when every check holds; 1 when one fails; 3 when the root, the entry or the key is not there;
4 when a region's catalog container cannot be read; 2 when the key is not a usable public key (docs/cli.md).

Trust comes from the root: pin it out of band. Without `--root` (and no `publish.tuf.trusted_root`) the local
export's first root is used, which only proves the files agree with each other; the report says it was not pinned.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from flows.cli.context import settings
from flows.cli.exit_codes import ExitCode
from flows.cli.output import JsonOption, console, emit, fail
from flows.cli.params import entry_id_argument
from registry.blob_sas import container_read_url
from registry.blobs import RegionalBlobStore
from registry.catalog_client import cache_dir_for
from registry.errors import RegistryError
from registry.keys import SigningKeyError
from registry.settings import Settings
from registry.verification_records import VerificationReport
from validators.catalog_verification import CatalogSource, UnknownEntryError, verify_published

_MAX_KEY_BYTES = 64 * 1024
_ENTRY = entry_id_argument()
_EXPORT = typer.Option(
    None, "--export-dir", help="Fetch the catalog from this local export instead of a region's catalog container."
)
_REGION = typer.Option(None, "--region", help="The region whose catalog container to fetch from (default: primary).")
_ROOT = typer.Option(
    None, "--root", help="The TUF root.json you pinned out of band (default: publish.tuf.trusted_root)."
)
_KEY = typer.Option(None, "--public-key", help="A PEM catalog key you pinned too: it must be the one the root trusts.")


def report_table(report: VerificationReport) -> Table:
    verdict = "[green]verified[/]" if report.ok else "[red]NOT verified[/]"
    table = Table(title=f"{report.entry_id} @ {report.revision[:12]}: {verdict}", show_header=True)
    table.add_column("", width=1)
    table.add_column("check", overflow="fold")
    table.add_column("detail", overflow="fold")
    for check in report.checks:
        mark = "[green]✓[/]" if check.passed else "[red]✗[/]"
        table.add_row(mark, check.name, check.detail)
    for approval in report.approvals:
        when = f"{approval.decided_at:%Y-%m-%d %H:%M} UTC"
        table.add_row("", "approved", escape(f"by {approval.reviewer} on {when}: {approval.reason}"))
    pinned = "pinned" if report.key_pinned else "NOT pinned: pass --root with the root.json you trust"
    table.caption = f"key {report.key_id[:16]} from {report.key_source or '-'}, {pinned}"
    return table


def _root(config: Settings, explicit: Path | None, export_dir: Path | None) -> tuple[Path, bool]:
    if explicit is not None:
        return explicit, True
    if config.publish.tuf.trusted_root:
        return Path(config.publish.tuf.trusted_root), True
    return (export_dir or config.catalog_export_dir) / "metadata" / "1.root.json", False


def source_for(config: Settings, export_dir: Path | None, region: str | None, root: Path | None) -> CatalogSource:
    """The catalog location (a local export, or a region's catalog container with a read SAS) and the root."""
    root_path, pinned = _root(config, root, export_dir)
    try:
        root_bytes = root_path.read_bytes()
    except OSError as exc:
        raise fail(
            f"no TUF root at {root_path} ({exc.strerror}); pass --root with the catalog's root.json, or "
            "--export-dir with an exported catalog",
            ExitCode.NOT_FOUND,
        ) from exc
    if export_dir is not None:
        base, query = export_dir.resolve().as_uri(), ""
    else:
        name = region or config.storage.primary_region
        storage = config.storage.model_copy(update={"container": config.storage.catalog_container})
        try:
            with RegionalBlobStore(storage, regions=(name,), retry_total=1) as blobs:
                base, _, query = container_read_url(blobs, name, valid_for=timedelta(hours=1)).partition("?")
        except RegistryError as exc:
            raise fail(f"cannot read the catalog container of region {name}: {exc}", ExitCode.UNREACHABLE) from exc
    return CatalogSource(
        base_url=base,
        root=root_bytes,
        root_source=str(root_path),
        root_pinned=pinned,
        cache_dir=cache_dir_for(config.data_dir, base),
        query=query,
    )


def verify(
    entry_id: str = _ENTRY,
    export_dir: Path | None = _EXPORT,
    region: str | None = _REGION,
    root: Path | None = _ROOT,
    public_key: Path | None = _KEY,
    as_json: bool = JsonOption,
) -> None:
    """Verify one published catalog entry end to end (TUF metadata, signatures, weights, images, bindings)."""
    config = settings()
    source = source_for(config, export_dir, region, root)
    try:
        pinned_key = None
        if public_key is not None:
            with public_key.open("rb") as handle:
                pinned_key = handle.read(_MAX_KEY_BYTES)  # a PEM key is < 1 KiB; a huge file is not one
        report = verify_published(source, entry_id, config.storage, pinned_key=pinned_key)
    except OSError as exc:
        message = f"cannot read the public key {public_key}: {exc.strerror}; pass --public-key PEM"
        raise fail(message, ExitCode.NOT_FOUND) from exc
    except SigningKeyError as exc:
        raise fail(f"{public_key} is not a usable public key: {exc}", ExitCode.USAGE) from exc
    except UnknownEntryError as exc:
        raise fail(str(exc), ExitCode.NOT_FOUND) from exc
    emit(report, as_json, lambda: console.print(report_table(report)))
    if not report.ok:
        raise typer.Exit(ExitCode.FAILED)


def register(app: typer.Typer) -> None:
    app.command("verify")(verify)
