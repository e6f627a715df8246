"""`curate verify ENTRY_ID`: a consumer checks one published entry end to end from the exported files alone.

Reads `<export dir>/entries/<ENTRY_ID>.json` and a public key, then checks the entry signature, the export
index, the weights in every region the entry names (signature blob, key, file set, every blob's sha256), every
image (signature over the pinned digest, the build tag still on that digest) and that each template was
validated on those digests. Exit code 0 only when every check holds; 1 when one fails; 3 when the entry or the
key is not there; the other codes of docs/cli.md otherwise.

Trust comes from the public key: pass `--public-key` with a key you pinned out of band. Without it the key
exported next to the entry (`keys/<key id>.pem`) is used, which only proves the files are consistent with
each other, not who made them; the report says which key was used and whether it was pinned.
"""

from __future__ import annotations

from pathlib import Path

import typer
from cryptography.hazmat.primitives.asymmetric import ec
from rich.table import Table

from flows.cli.context import settings
from flows.cli.exit_codes import ExitCode
from flows.cli.output import JsonOption, console, emit, fail
from flows.cli.params import entry_id_argument
from registry.entries import PublicationError, entry_digest, load_exported_entry, verify_index
from registry.identifiers import check_sha256
from registry.keys import SigningKeyError, load_public_key
from registry.schema import CatalogEntry, VerificationCheck, VerificationReport

_MAX_KEY_BYTES = 64 * 1024
_ENTRY = entry_id_argument()
_EXPORT = typer.Option(
    None, "--export-dir", help="The exported catalog (default: publish.export_dir, i.e. <data_dir>/catalog-export)."
)
_KEY = typer.Option(
    None, "--public-key", help="PEM public key you trust (pinned). Default: the key exported with the entry."
)


def index_check(directory: Path, entry: CatalogEntry, public_key: ec.EllipticCurvePublicKey) -> VerificationCheck:
    """The export's signed index lists this entry with its digest and its current status."""
    try:
        rows = verify_index(directory, public_key)
    except PublicationError as exc:
        return VerificationCheck(name="index", passed=False, detail=str(exc))
    row = rows.get(entry.id)
    if row is None:
        return VerificationCheck(name="index", passed=False, detail=f"the signed index does not list {entry.id}")
    problems = []
    if row.get("digest") != entry_digest(entry):
        problems.append("the signed index records another digest than the exported entry has")
    if row.get("status") != entry.status.value:
        problems.append(f"the signed index says {row.get('status')}, the exported entry says {entry.status.value}")
    if problems:
        return VerificationCheck(name="index", passed=False, detail="; ".join(problems))
    return VerificationCheck(name="index", passed=True, detail="listed in the signed index with this digest and status")


def _key_path(directory: Path, entry: CatalogEntry, explicit: Path | None) -> Path:
    if explicit is not None:
        return explicit
    if entry.signature is None:
        raise fail(f"entry {entry.id} is not signed and no --public-key was given; nothing can be trusted")
    return directory / "keys" / f"{check_sha256(entry.signature.key_id)}.pem"


def report_table(report: VerificationReport) -> Table:
    verdict = "[green]verified[/]" if report.ok else "[red]NOT verified[/]"
    table = Table(title=f"{report.entry_id} @ {report.revision[:12]}: {verdict}", show_header=True)
    table.add_column("", width=1)
    table.add_column("check", overflow="fold")
    table.add_column("detail", overflow="fold")
    for check in report.checks:
        mark = "[green]✓[/]" if check.passed else "[red]✗[/]"
        table.add_row(mark, check.name, check.detail)
    pinned = "pinned (--public-key)" if report.key_pinned else "taken from the export: NOT pinned, pass --public-key"
    table.caption = f"key {report.key_id[:16]} from {report.key_source}, {pinned}"
    return table


def verify(
    entry_id: str = _ENTRY,
    export_dir: Path | None = _EXPORT,
    public_key: Path | None = _KEY,
    as_json: bool = JsonOption,
) -> None:
    """Verify one published catalog entry end to end (signatures, weights in every region, images, bindings)."""
    from validators.verification import verify_catalog_entry

    config = settings()
    directory = export_dir or config.catalog_export_dir
    try:
        entry = load_exported_entry(directory, entry_id)
    except PublicationError as exc:
        raise fail(str(exc), ExitCode.NOT_FOUND) from exc
    except ValueError as exc:
        raise fail(f"{directory}/entries/{entry_id}.json is not a catalog entry: {exc}") from exc
    key_path = _key_path(directory, entry, public_key)
    try:
        with key_path.open("rb") as handle:
            key = load_public_key(handle.read(_MAX_KEY_BYTES))
    except OSError as exc:
        raise fail(f"cannot read the public key {key_path}: {exc}; pass --public-key PEM", ExitCode.NOT_FOUND) from exc
    except SigningKeyError as exc:
        raise fail(f"{key_path} is not a usable public key: {exc}", ExitCode.USAGE) from exc
    report = verify_catalog_entry(
        entry,
        config.storage,
        key,
        key_source=str(key_path),
        key_pinned=public_key is not None,
        extra=(index_check(directory, entry, key),),
    )
    emit(report, as_json, lambda: console.print(report_table(report)))
    if not report.ok:
        raise typer.Exit(ExitCode.FAILED)


def register(app: typer.Typer) -> None:
    app.command("verify")(verify)
