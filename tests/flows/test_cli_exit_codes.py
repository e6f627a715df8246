"""The CLI's error boundary: one line per failure, the exit codes of flows/cli/exit_codes.py (and docs/cli.md)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import typer
from typer.testing import CliRunner

from flows.cli.app import app
from flows.cli.boundary import CurateGroup
from flows.cli.context import STATE
from flows.cli.exit_codes import CliError, ExitCode, classify
from registry.blob_errors import StorageAuthError, StorageUnavailableError
from registry.errors import HubResponseError, HubUnreachableError, RepoNotFoundError
from registry.identifiers import InvalidIdentifierError
from registry.oci import OciError
from registry.schema import StageName
from scanners.errors import ScreeningError
from validators.errors import EndpointUnreachableError, NotOpenAIEndpointError, PlannerError

REPO_ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _doc_codes() -> dict[int, str]:
    text = (REPO_ROOT / "docs" / "cli.md").read_text()
    table = text.split("## Failures and exit codes", 1)[1].split("\n\n", 2)[1]
    rows = [line.split("|")[1:3] for line in table.splitlines() if re.match(r"\| \d", line)]
    return {int(code): name.strip() for codes, name in rows for code in codes.split(",")}


def test_docs_list_every_exit_code() -> None:
    documented = _doc_codes()
    for code in ExitCode:
        assert code.value in documented, f"docs/cli.md does not list exit code {code.value} ({code.name})"
        assert documented[code.value].replace(" ", "_").upper() in (code.name, "INTERRUPTED")
    assert documented[143] == "interrupted"


def _caused(outer: Exception, cause: BaseException) -> Exception:
    outer.__cause__ = cause
    return outer


def test_each_error_falls_in_its_class_through_its_causes() -> None:
    refused = httpx.ConnectError("[Errno 111] Connection refused")
    assert classify(_caused(ScreeningError("org/x: not found"), RepoNotFoundError("no"))) is ExitCode.NOT_FOUND
    assert classify(_caused(OciError("registry unreachable"), refused)) is ExitCode.UNREACHABLE
    assert classify(HubUnreachableError("refused")) is ExitCode.UNREACHABLE
    assert classify(HubResponseError("not a Hub")) is ExitCode.INCOMPATIBLE
    assert classify(StorageAuthError("keys refused")) is ExitCode.REFUSED
    assert classify(StorageUnavailableError("503")) is ExitCode.UNREACHABLE
    assert classify(InvalidIdentifierError("bad id")) is ExitCode.USAGE
    assert classify(EndpointUnreachableError("x")) is ExitCode.UNREACHABLE
    assert classify(NotOpenAIEndpointError("x")) is ExitCode.INCOMPATIBLE
    assert classify(PlannerError("hash mismatch")) is ExitCode.FAILED
    assert classify(CliError("x", ExitCode.NOT_FOUND)) is ExitCode.NOT_FOUND
    assert classify(FileNotFoundError("x")) is ExitCode.NOT_FOUND
    # A bug stays a bug whatever caused it.
    assert classify(_caused(RuntimeError("boom"), ConnectionRefusedError())) is ExitCode.INTERNAL
    assert classify(KeyError("x")) is ExitCode.INTERNAL


def test_rerun_stages_are_the_flows_stages() -> None:
    from flows.cli.run import STAGES
    from flows.curate import STAGE_ORDER

    assert STAGES == STAGE_ORDER
    assert StageName.BUILD.value not in STAGES


def _toy_app(error: BaseException) -> typer.Typer:
    toy = typer.Typer(cls=CurateGroup)

    @toy.callback()
    def main(debug: bool = typer.Option(False, "--debug")) -> None:
        STATE.debug = debug

    @toy.command()
    def boom() -> None:
        raise error

    @toy.command()
    def fine() -> None:
        typer.echo("fine")

    return toy


def test_a_bug_is_one_line_naming_its_trace_file(tmp_path: Path) -> None:
    STATE.overrides["data_dir"] = tmp_path
    try:
        result = runner.invoke(_toy_app(ZeroDivisionError("division by zero")), ["boom"])
    finally:
        STATE.overrides.clear()
    assert result.exit_code == ExitCode.INTERNAL
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    assert lines[0].startswith("error: internal error (ZeroDivisionError: division by zero)")
    trace = Path(re.search(r"the full trace is in (\S+);", lines[0]).group(1))  # type: ignore[union-attr]
    assert trace.parent == tmp_path / "logs"
    assert "Traceback" in trace.read_text() and "ZeroDivisionError" in trace.read_text()


def test_debug_shows_the_traceback_and_success_is_zero() -> None:
    toy = _toy_app(PlannerError("config.json disagrees with the tensors"))
    quiet = runner.invoke(toy, ["boom"])
    assert quiet.exit_code == ExitCode.FAILED
    assert quiet.stderr == "error: config.json disagrees with the tensors\n"
    loud = runner.invoke(toy, ["--debug", "boom"])
    assert loud.exit_code == ExitCode.FAILED and "Traceback" in loud.stderr
    assert runner.invoke(toy, ["fine"]).exit_code == ExitCode.OK


def test_messages_stay_on_one_line_and_are_not_markup() -> None:
    result = runner.invoke(_toy_app(CliError("bad [bold]thing[/]\nsecond line\nthird", ExitCode.USAGE)), ["boom"])
    assert result.exit_code == ExitCode.USAGE
    assert result.stderr == "error: bad [bold]thing[/] (more with --debug)\n"


def test_usage_errors_are_one_line_with_exit_2(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path)]
    cases = [
        [*data, "screen", "a/b/c"],
        [*data, "plan", "../../etc/passwd"],
        [*data, "stage", "org/name", "--revision", "../../x"],
        [*data, "stage", "org/name", "--region", "mars"],
        [*data, "discover", "--request", "org/x@main"],
        [*data, "rerun", "org/x", "--from-stage", "build"],
        [*data, "catalog", "show", "../../etc/passwd"],
        [*data, "images", "verify", "no-registry-here"],
        [*data, "bench", "file:///etc/passwd", "--model", "x"],
        [*data, "conformance", "http://127.0.0.1:9/v1", "--model", "x", "--check", "no.such.check"],
        [*data, "screen"],
        [*data, "no-such-command"],
    ]
    for args in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == ExitCode.USAGE, (args, result.output)
        assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error: "), args
    assert runner.invoke(app, []).exit_code == ExitCode.USAGE  # the help, as click has it


def test_not_found(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path)]
    assert runner.invoke(app, [*data, "catalog", "show", "acme--nothing"]).exit_code == ExitCode.NOT_FOUND
    missing_run = runner.invoke(app, [*data, "catalog", "candidates", "--run", "no-such-run"])
    assert missing_run.exit_code == ExitCode.NOT_FOUND and "no run" in missing_run.stderr
