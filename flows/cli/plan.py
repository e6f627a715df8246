"""`curate plan REPO_ID`: the deployment templates a model fits, with the memory breakdown of each."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from flows.cli.context import settings
from flows.cli.exit_codes import ExitCode
from flows.cli.output import JsonOption, console, emit, fail
from flows.cli.params import TASKS, one_of, repo_id_argument, revision_option
from registry.schema import DeploymentTemplate

if TYPE_CHECKING:
    from validators.tasks import TaskDecision

GIB = 1024**3
_MAX_CONFIG_BYTES = 2_000_000


def _from_hub(repo_id: str, revision: str | None) -> tuple[dict[str, Any], dict[str, int], str | None, TaskDecision]:
    """config.json, the safetensors parameters, the sha and the task (from config, processor files and card)."""
    from registry.hub import HfHubSource
    from validators.tasks import detect_task, hub_evidence

    source = HfHubSource(settings().hub)
    try:
        info = source.model_info(repo_id, revision)
        raw = source.read_file(info.ref(), "config.json", max_bytes=_MAX_CONFIG_BYTES)
        decision = detect_task(hub_evidence(source, info))
    finally:
        source.close()
    return _config(raw, f"{repo_id}: config.json"), dict(info.safetensors_parameters), info.sha, decision


def _config(raw: bytes, where: str) -> dict[str, Any]:
    if len(raw) > _MAX_CONFIG_BYTES:
        raise fail(f"{where} is larger than {_MAX_CONFIG_BYTES} bytes: not a config.json", ExitCode.USAGE)
    try:
        config = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise fail(f"{where} is not valid JSON ({exc})") from exc
    if not isinstance(config, dict):
        raise fail(f"{where} is not a JSON object")
    return config


def templates_table(templates: tuple[DeploymentTemplate, ...], title: str) -> Table:
    table = Table(title=title)
    for column in (
        "template",
        "runtime",
        "count",
        "context",
        "weights",
        "KV",
        "reserve",
        "total / usable",
        "max conc.",
    ):
        table.add_column(column, overflow="fold")
    for t in templates:
        m = t.memory
        assert m is not None
        table.add_row(
            t.id,
            t.runtime,
            str(t.count),
            str(t.context_length),
            f"{m.weights_bytes / GIB:.2f} GiB",
            f"{m.kv_cache_bytes / GIB:.2f} GiB",
            f"{m.reserve_bytes / GIB:.2f} GiB",
            f"{m.total_bytes / GIB:.2f} / {m.capacity_bytes / GIB:.2f} GiB",
            str(t.max_concurrency),
        )
    return table


def _render(templates: tuple[DeploymentTemplate, ...], repo_id: str) -> None:
    if not templates:
        console.print(f"[yellow]{repo_id} fits no enabled runtime x accelerator family in the policy.[/]")
        return
    console.print(templates_table(templates, f"Deployment templates for {repo_id} (memory per accelerator)"))
    for t in templates:
        parsers = ", ".join(
            f"{k} {v}" for k, v in (("tool parser", t.tool_call_parser), ("reasoning", t.reasoning_parser)) if v
        )
        console.print(f"[bold]{t.id}[/] {parsers}")
        console.print(f"  args: {' '.join(t.runtime_args)}", soft_wrap=True)
        if t.memory is not None:
            console.print(f"  [dim]{t.memory.formula}[/]", soft_wrap=True)


def plan_command(
    repo_id: str = repo_id_argument("Model repository (org/name); with --config-file only names the ids."),
    revision: str | None = revision_option(),
    config_file: Path | None = typer.Option(
        None,
        "--config-file",
        exists=True,
        dir_okay=False,
        help="Plan from this local config.json instead of the Hub.",
    ),
    parameters: int | None = typer.Option(
        None,
        "--parameters",
        min=1,
        max=10**15,
        help="With --config-file: parameter count (else estimated from the config).",
    ),
    dtype: str = typer.Option("BF16", "--dtype", help="With --parameters: the safetensors dtype of those parameters."),
    task: str | None = typer.Option(
        None,
        "--task",
        callback=one_of(*TASKS),
        help="chat, embeddings, automatic-speech-recognition or image-text-to-text (default: detected from the "
        "repository's config, processor files and card).",
    ),
    as_json: bool = JsonOption,
) -> None:
    """Derive deployment templates (runtime x accelerator x count x context) from config.json and weights
    metadata."""
    from validators.planner import plan

    sha: str | None = None
    detected: TaskDecision | None = None
    if config_file is not None:
        with config_file.open("rb") as handle:
            config = _config(handle.read(_MAX_CONFIG_BYTES + 1), str(config_file))
        params = {dtype.upper(): parameters} if parameters else {}
    else:
        with console.status(f"reading {repo_id} config.json and safetensors metadata ...", spinner="dots"):
            config, params, sha, detected = _from_hub(repo_id, revision)
    task = task or (detected.require_supported() if detected is not None else None)
    templates = plan(repo_id, config, params or None, settings(), revision=sha, task=task)
    emit(list(templates), as_json, lambda: _render(templates, repo_id))


def register(app: typer.Typer) -> None:
    app.command("plan")(plan_command)
