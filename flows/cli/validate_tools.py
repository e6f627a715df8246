"""`curate conformance` and `curate bench`: the stage-5 instruments against any OpenAI-compatible server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from flows.cli.context import settings
from flows.cli.exit_codes import ExitCode
from flows.cli.output import JsonOption, console, emit, fail
from flows.cli.params import TASKS, checked, one_of
from registry.identifiers import check_http_url, shown
from registry.schema import BenchmarkMetrics, CheckStatus, ConformanceReport

_MAX_CONCURRENCY = 100_000
_STYLE = {CheckStatus.PASS: "green", CheckStatus.FAIL: "bold red", CheckStatus.SKIP: "yellow"}


def _conformance_view(report: ConformanceReport) -> None:
    table = Table(title=f"{report.suite} {report.version}: {report.model} ({report.task}) at {report.base_url}")
    for column in ("check", "v", "result", "detail"):
        table.add_column(column, overflow="fold")
    for check in report.checks:
        style = _STYLE[check.status]
        table.add_row(check.name, str(check.version), f"[{style}]{check.status.value}[/]", check.detail)
    console.print(table)
    counts = {s: sum(1 for c in report.checks if c.status is s) for s in CheckStatus}
    console.print(
        f"{counts[CheckStatus.PASS]} passed, {counts[CheckStatus.FAIL]} failed, {counts[CheckStatus.SKIP]} skipped"
    )


_BASE_URL_HELP = "OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1"


def conformance(
    base_url: str | None = typer.Argument(None, help=_BASE_URL_HELP, callback=checked(check_http_url)),
    model: str | None = typer.Option(None, "--model", "-m", help="The served model id."),
    task: str = typer.Option(
        "chat",
        "--task",
        help="chat, embeddings, automatic-speech-recognition or image-text-to-text.",
        callback=one_of(*TASKS),
    ),
    tool_parser: str | None = typer.Option(
        None, "--tool-parser", help="The template's tool parser (enables tool checks)."
    ),
    only: list[str] | None = typer.Option(None, "--check", help="Run only this check (repeatable)."),
    max_tokens: int = typer.Option(6, "--max-tokens", min=2, max=100_000, help="max_tokens of the short generations."),
    timeout: float = typer.Option(120.0, "--timeout", min=0.1, max=3600, help="Per-request timeout in seconds."),
    markdown: Path | None = typer.Option(None, "--markdown", help="Also write the markdown report here."),
    list_checks: bool = typer.Option(False, "--list", help="List every check: name, version, what it asserts."),
    as_json: bool = JsonOption,
) -> None:
    """Run the OpenAI-API conformance suite; exits 1 when a check fails (docs/cli.md lists every exit code)."""
    from validators.conformance import checks_for, report_markdown, run_suite
    from validators.conformance_checks.base import Target
    from validators.endpoint import served_models

    if list_checks:
        rows = _check_rows()
        emit(rows, as_json, lambda: console.print(_checks_table(rows)))
        return
    if base_url is None or model is None:
        raise fail("give BASE_URL and --model (or --list to see the checks)", ExitCode.USAGE)
    checks_for(task, only or None)  # an unknown check name is a usage error before any request
    target = Target(base_url, model, task=task, tool_call_parser=tool_parser, timeout_s=timeout, max_tokens=max_tokens)
    with console.status(f"running the {task} conformance checks against {base_url} ...", spinner="dots"):
        served_models(base_url, timeout_s=min(timeout, 10.0))
        report = run_suite(target, only=only or None)
    if markdown is not None:
        markdown.write_text(report_markdown(report))
    emit(report, as_json, lambda: _conformance_view(report))
    if report.failed:
        raise typer.Exit(ExitCode.FAILED)


def _check_rows() -> list[dict[str, Any]]:
    """Every check of the suite in order: `--list --json` (shape in docs/cli.md)."""
    from validators.conformance import CHECKS

    return [{"name": c.name, "version": c.version, "tasks": sorted(c.tasks), "asserts": c.description} for c in CHECKS]


def _checks_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="OpenAI-API conformance checks, in suite order")
    for column in ("check", "v", "tasks", "asserts"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row["name"], str(row["version"]), ", ".join(row["tasks"]), row["asserts"])
    return table


def _bench_view(results: tuple[BenchmarkMetrics, ...]) -> None:
    table = Table(title="Throughput")
    columns = (
        "load",
        "ok",
        "err",
        "req/s",
        "out tok/s",
        "TTFT p50/p99",
        "TPOT p50",
        "ITL p50",
        "e2e p50/p99",
        "goodput",
    )
    for column in columns:
        table.add_column(column)
    for r in results:
        load = f"c={r.concurrency:g}" if r.concurrency is not None else f"rate={r.rate:g}"
        table.add_row(
            f"{r.profile} {load}",
            str(r.requests),
            str(r.errors),
            f"{r.request_throughput:.3f}",
            f"{r.output_token_throughput:.2f}",
            f"{r.ttft_s.p50:.3f}/{r.ttft_s.p99:.3f}" if r.ttft_s else "-",
            f"{r.tpot_s.p50:.4f}" if r.tpot_s else "-",
            f"{r.itl_s.p50:.4f}" if r.itl_s else "-",
            f"{r.e2e_s.p50:.3f}/{r.e2e_s.p99:.3f}" if r.e2e_s else "-",
            f"{r.goodput:.3f}" if r.goodput is not None else "-",
        )
    console.print(table)


def bench(
    base_url: str = typer.Argument(..., help=_BASE_URL_HELP, callback=checked(check_http_url)),
    model: str = typer.Option(..., "--model", "-m", help="The served model id."),
    profile: str = typer.Option("synchronous", "--profile", help="synchronous|concurrent|sweep|constant|poisson."),
    concurrency: int = typer.Option(
        1, "--concurrency", min=1, max=_MAX_CONCURRENCY, help="Workers for --profile concurrent."
    ),
    concurrencies: str = typer.Option("1,2,4", "--concurrencies", help="Ladder for --profile sweep, e.g. 1,2,4,8."),
    rate: float | None = typer.Option(
        None, "--rate", min=0.001, max=1_000_000, help="Requests per second for constant/poisson."
    ),
    max_requests: int = typer.Option(
        20, "--max-requests", min=1, max=10_000_000, help="Bound: requests per load level."
    ),
    max_duration: float = typer.Option(
        60.0, "--max-duration", min=0.001, max=7 * 86400, help="Bound: seconds per load level."
    ),
    input_tokens: int = typer.Option(128, "--input-tokens", min=1, max=1_000_000),
    output_tokens: int = typer.Option(32, "--output-tokens", min=1, max=1_000_000),
    tokenizer: Path | None = typer.Option(None, "--tokenizer", help="Model directory with tokenizer.json."),
    out: Path | None = typer.Option(None, "--out", help="Write results.json, results.csv (and sweep.png) here."),
    seed: int = typer.Option(0, "--seed", min=0, max=2**32 - 1),
    as_json: bool = JsonOption,
) -> None:
    """Run a bounded throughput benchmark; metrics per load level, goodput against the policy's SLOs."""
    from validators.bench_report import plot_sweep, write_csv, write_json
    from validators.endpoint import served_models
    from validators.throughput import LoadSpec, run_benchmark

    spec = LoadSpec(
        profile=profile,
        concurrency=concurrency,
        concurrencies=_ladder(concurrencies),
        rate=rate,
        max_requests=max_requests,
        max_duration_s=max_duration,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        seed=seed,
    )
    spec.validate()
    with console.status(f"benchmarking {model} at {base_url} ({profile}) ...", spinner="dots"):
        served_models(base_url)
        results = run_benchmark(base_url, model, spec, tokenizer_dir=tokenizer, slo=settings().slo)
    if out is not None:
        write_json(results, out / "results.json")
        write_csv(results, out / "results.csv")
        if profile == "sweep":
            plot_sweep(results, out / "sweep.png", title=f"{model} ({base_url})")
    emit(list(results), as_json, lambda: _bench_view(results))
    _fail_when_every_request_failed(results, base_url, model)


def _ladder(concurrencies: str) -> tuple[int, ...]:
    try:
        ladder = tuple(int(part) for part in concurrencies.split(",") if part.strip())
        if not all(1 <= level <= _MAX_CONCURRENCY for level in ladder):
            raise ValueError(concurrencies)
    except ValueError as exc:
        message = f"--concurrencies must be comma-separated integers 1..{_MAX_CONCURRENCY}, got {shown(concurrencies)}"
        raise fail(message, ExitCode.USAGE) from exc
    return ladder


def _fail_when_every_request_failed(results: tuple[BenchmarkMetrics, ...], base_url: str, model: str) -> None:
    """A load level without one successful request has metrics that mean nothing: never exit 0 for it."""
    empty = next((r for r in results if r.requests == 0), None)
    if empty is None:
        return
    level = f"c={empty.concurrency:g}" if empty.concurrency is not None else f"rate={empty.rate:g}"
    raise fail(
        f"every request failed at {level} ({empty.errors} errors, {empty.timeouts} timeouts): the metrics mean "
        f"nothing; check that {base_url} serves {shown(model)} (`curate conformance`)"
    )


def register(app: typer.Typer) -> None:
    app.command("conformance")(conformance)
    app.command("bench")(bench)
