"""`curate dev up|down|status|env`: the local stack on 127.0.0.1."""

from __future__ import annotations

import shlex

import typer
from rich.table import Table

from devstack.process import ProcessError
from devstack.stack import StackContext, down, up
from devstack.state import load_state
from flows.cli.context import settings
from flows.cli.output import JsonOption, console, emit, fail

dev_app = typer.Typer(help="Start and stop the local stack (Hub test server, Prefect, ...).", no_args_is_help=True)


def _context(registry_auth: bool = False) -> StackContext:
    current = settings()
    return StackContext(
        data_dir=current.data_dir.resolve(),
        regions={name: region.account for name, region in current.storage.regions.items()},
        pools=tuple(sorted({family.pool for family in current.accelerators.values()})),
        registry_auth=registry_auth,
        progress=lambda message: console.print(f"[dim]-[/] {message}"),
    )


def _status_table() -> Table:
    state = load_state(settings().data_dir.resolve())
    table = Table(title="Local stack")
    for column in ("service", "state", "url", "pids"):
        table.add_column(column)
    for service in state.services.values():
        alive = service.alive()
        table.add_row(
            service.name,
            "[green]up[/]" if alive else "[red]down[/]",
            service.url or "-",
            ", ".join(str(p) for p in service.pids),
        )
    return table


@dev_app.command("up")
def dev_up(
    only: list[str] | None = typer.Option(None, "--only", help="Start only these services (repeatable)."),
    registry_auth: bool = typer.Option(
        False, "--registry-auth", help="The image registry needs a login (htpasswd); `curate dev env` exports it."
    ),
) -> None:
    """Start the local stack (idempotent: running services are kept)."""
    try:
        up(_context(registry_auth), tuple(only or ()))
    except (ProcessError, OSError) as exc:
        raise fail(f"{exc}. Stop what was started with `curate dev down`, fix the cause, then retry.") from exc
    console.print(_status_table())


@dev_app.command("down")
def dev_down() -> None:
    """Stop every service of the local stack."""
    down(_context())
    console.print("local stack stopped")


@dev_app.command("status")
def dev_status(as_json: bool = JsonOption) -> None:
    """Show which local services run and where."""
    state = load_state(settings().data_dir.resolve())
    emit(state, as_json, lambda: console.print(_status_table()))


@dev_app.command("env")
def dev_env() -> None:
    """Print `export` lines for the running stack (e.g. `eval "$(curate dev env)"` before `prefect artifact ls`)."""
    for key, value in load_state(settings().data_dir.resolve()).env().items():
        typer.echo(f"export {key}={shlex.quote(value)}")


def register(app: typer.Typer) -> None:
    app.add_typer(dev_app, name="dev")
