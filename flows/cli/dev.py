"""`curate dev up|down|status|env`: the local stack on 127.0.0.1, and every command's use of a running one.

The only product module that imports `devstack` (the import contracts in pyproject.toml name it).
"""

from __future__ import annotations

import shlex
from pathlib import Path

import typer
from rich.table import Table

from devstack.process import ProcessError
from devstack.stack import SERVICES, StackContext, apply_stack_env, down, up
from devstack.state import load_state
from flows.cli.context import settings
from flows.cli.output import JsonOption, console, emit, err_console, fail
from registry.identifiers import shown
from registry.quotas import pools

dev_app = typer.Typer(help="Start and stop the local stack (Hub test server, Prefect, ...).", no_args_is_help=True)


def use_running_stack(data_dir: Path, *, announce: bool = True) -> dict[str, str]:
    """After `curate dev up`, point clients (HF_ENDPOINT, PREFECT_API_URL, ...) at the running local stack,
    unless the user set those variables; says so in one line on stderr (not for `curate dev` itself)."""
    applied = apply_stack_env(data_dir)
    if applied and announce:
        names = ", ".join(sorted(applied))
        err_console.print(
            f"using the local stack of {data_dir} (`curate dev up`): {names}; set them yourself to use others",
            soft_wrap=True,
            highlight=False,
            markup=False,
        )
    return applied


def _context(registry_auth: bool = False, workers: int = 1) -> StackContext:
    current = settings()
    return StackContext(
        data_dir=current.data_dir.resolve(),
        regions={name: region.account for name, region in current.storage.regions.items()},
        pools=pools(current),
        curation_pool=current.orchestration.pool,
        workers=workers,
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


def _services(names: list[str] | None) -> list[str] | None:
    unknown = [name for name in names or () if name not in SERVICES]
    if unknown:
        raise typer.BadParameter(f"{shown(unknown[0])} is not a service; choose from {', '.join(SERVICES)}")
    return names


@dev_app.command("up")
def dev_up(
    only: list[str] | None = typer.Option(
        None, "--only", help=f"Start only these services (repeatable): {', '.join(SERVICES)}.", callback=_services
    ),
    registry_auth: bool = typer.Option(
        False, "--registry-auth", help="The image registry needs a login (htpasswd); `curate dev env` exports it."
    ),
    workers: int = typer.Option(
        1, "--workers", min=1, max=32, help="Local workers of the curation pool (each runs models' flow runs)."
    ),
) -> None:
    """Start the local stack (idempotent: running services are kept; `dev down` first to change --workers)."""
    try:
        up(_context(registry_auth, workers), tuple(only or ()))
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
