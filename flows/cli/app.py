"""The root `curate` command: global options, the error boundary and the registration of every command group."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from flows.cli import context
from flows.cli.boundary import CurateGroup
from flows.cli.dev import use_running_stack

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

app = typer.Typer(
    name="curate",
    cls=CurateGroup,
    help="Curate trending Hugging Face models into verified, deployable catalog entries.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def main(
    ctx: typer.Context,
    config: Path | None = typer.Option(None, "--config", help="Policy file (default ./curation.toml)."),
    endpoint: str | None = typer.Option(None, "--endpoint", help="Hub endpoint (default HF_ENDPOINT or the Hub)."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Local state directory (default .curation)."),
    debug: bool = typer.Option(False, "--debug", help="On failure, also print the traceback (and Prefect's logs)."),
) -> None:
    context.configure(config, endpoint, data_dir, debug=debug)
    if not debug and "prefect" not in sys.modules:
        # Flow runs keep sending their logs to the Prefect API (the UI); only the console copy is quiet, so that a
        # failure ends in the CLI's one line rather than in Prefect's tracebacks. (Read when Prefect is imported.)
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    use_running_stack(context.settings().data_dir.resolve(), announce=ctx.invoked_subcommand != "dev")


def _register() -> None:
    # Command groups register themselves here, one module each (their heavy imports stay inside the commands).
    from flows.cli import catalog, dev, discover, images, plan, review, run, screen, stage, validate_tools
    from flows.cli import verify as verify_cli

    for group in (discover, run, screen, review, stage, images, plan, validate_tools, catalog, dev, verify_cli):
        group.register(app)


_register()
