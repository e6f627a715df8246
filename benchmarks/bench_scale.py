"""Scale benchmark (issue 14): one weekly run curating N small sample models with 1, 2 and 4 workers.

Setup, all on this machine: PostgreSQL (a private cluster) holds Prefect's database and the catalog store; a
`prefect server` runs on it; the Hub test server serves N copies of the tiny sample model and answers every
request after a stated latency (an injected delay); Azurite serves the three regions of curation.toml; a private
dockerd + registry run the cells. The cells are I/O-bound: the runtime image is hf-serve's as
builders/recipes/offline.py builds it (the shared entrypoint and its locked model-signing venv fetch and verify the
staged weights) with only the server the entrypoint execs replaced by a stand-in whose answers take a fixed time
(benchmarks/scale_standin.py), recorded as the signed hf-serve image; GPU cells end "no worker online" at once (no
GPU pool has a worker).

For each worker count W: a fresh catalog database, blob container and work pool; W `prefect worker` processes
(`--limit 1`: one model at a time each, like one machine each); `weekly_curation` in this process dispatching
`curate-model` flow runs (`orchestration.max_parallel_models` = 8). Measured: the makespan of the weekly run,
peak concurrent Hub weight downloads (whole-file safetensors GETs at the Hub server) and blob uploads
(`upload-primary` task runs, which run inside their `blob-uploads` slot) against their limits, peak concurrent
model runs, and the speed-up against one worker. After the first worker count's run, the weekly run once more with
nothing new upstream: its time against the first, and where it went (Prefect's flow and task run times, and a
cProfile of the run's own thread, printed). Writes docs/benchmarks/scale.md with --write-doc.

    python -m benchmarks.bench_scale [--models 40] [--workers 1 2 4] [--latency 0.25] [--write-doc]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import platform
import pstats
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.scale_stack import BenchStack, start_stack
from devstack.hub.control import peak_concurrency

REPO_ROOT = Path(__file__).resolve().parent.parent
OUT = REPO_ROOT / "docs" / "benchmarks" / "scale.md"
LIMITS = {"hub_downloads": 3, "blob_uploads": 3}
MAX_PARALLEL = 8
GOAL_MODELS = 40  # issue 14's benchmark


def cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine (/proc/stat): every process, other users' included."""
    fields = [float(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


@dataclass(frozen=True)
class Result:
    workers: int
    makespan_s: float
    cpu_busy: float
    peak_downloads: int
    peak_uploads: int
    peak_models: int
    outcomes: dict[str, int]
    status: str


def overrides_for(stack: BenchStack, workers: int, pool: str, catalog_url: str) -> dict[str, Any]:
    return {
        "data_dir": str(stack.work / f"data-w{workers}"),
        "catalog": {"url": catalog_url},
        "storage": {"container": f"bench-w{workers}", "primary_region": "eastus"},
        "hub": {"endpoint": stack.hub.url, "max_retries": 2},
        "discovery": {"limit": 1000},
        "images": {"registry": stack.docker.registry, "runtimes": ["hf-serve"]},
        "accelerators": {"cpu": {"quota": {"eastus": {"devices": 8}}}},
        "orchestration": {"dispatch": "deployment", "pool": pool, "max_parallel_models": MAX_PARALLEL, **LIMITS},
        "validation": stack.validation_policy(),
    }


@dataclass(frozen=True)
class SecondWeek:
    """The same weekly run again with nothing new upstream: how long, against the first, and where the time went."""

    workers: int
    makespan_s: float
    first_s: float
    cpu_busy: float
    hub_requests: int
    outcomes: dict[str, int]
    profile: dict[str, tuple[int, float]]


def second_week(stack: BenchStack, workers: int, overrides: dict[str, Any], first_s: float) -> SecondWeek:
    from flows.curate import weekly_curation

    stack.hub.requests.clear()
    profiler = cProfile.Profile()
    busy0, total0 = cpu_times()
    started = time.time()
    summary = profiler.runcall(weekly_curation, overrides=overrides)
    finished = time.time()
    busy1, total1 = cpu_times()
    calls = io.StringIO()
    pstats.Stats(profiler, stream=calls).sort_stats("cumulative").print_stats(r"(flows|registry|decisions)/", 40)
    print(calls.getvalue(), flush=True)  # where the weekly run's own thread spent its time
    return SecondWeek(
        workers=workers,
        makespan_s=finished - started,
        first_s=first_s,
        cpu_busy=(busy1 - busy0) / max(total1 - total0, 1.0),
        hub_requests=len(stack.hub.requests.entries()),
        outcomes=dict(summary.outcomes),
        profile=stack.profile(started),
    )


def run_once(stack: BenchStack, workers: int, *, again: bool) -> tuple[Result, SecondWeek | None]:
    """One weekly run with `workers` workers on a fresh catalog; with `again`, a second one with nothing new."""
    from flows.curate import weekly_curation

    pool = f"bench-curation-w{workers}"
    catalog_url = stack.postgres.create_database(f"catalog_w{workers}")
    overrides = overrides_for(stack, workers, pool, catalog_url)
    stack.record_standin(overrides)
    with stack.workers(pool, workers):
        stack.hub.requests.clear()
        busy0, total0 = cpu_times()
        started = time.time()
        summary = weekly_curation(overrides=overrides)
        finished = time.time()
        busy1, total1 = cpu_times()
        downloads = [
            (r.started_at, r.finished_at)
            for r in stack.hub.requests.entries()
            if r.method == "GET" and r.range is None and r.path.endswith(".safetensors") and "/resolve/" in r.path
        ]
        week2 = second_week(stack, workers, overrides, finished - started) if again else None
    return Result(
        workers=workers,
        makespan_s=finished - started,
        cpu_busy=(busy1 - busy0) / max(total1 - total0, 1.0),
        peak_downloads=peak_concurrency(downloads),
        peak_uploads=peak_concurrency(stack.task_spans("upload-primary", started)),
        peak_models=peak_concurrency(stack.flow_spans("curate-model", started)),
        outcomes=dict(summary.outcomes),
        status=summary.status,
    ), week2


def markdown(results: list[Result], args: argparse.Namespace, setup_s: float) -> str:
    base = results[0].makespan_s
    lines = [
        "# Scale: one weekly run over many models, 1 to 4 workers",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d} by `python -m benchmarks.bench_scale --models {args.models} "
        f"--workers {' '.join(map(str, args.workers))} --latency {args.latency} --write-doc` on "
        f"{platform.machine()} with {os.cpu_count()} CPU cores, Python {platform.python_version()}; the machine's "
        f"load average was {args.load_before:.2f} before the stack started. Stack set-up took {setup_s:.0f} s "
        "(not counted).",
        "",
        f"- {args.models} copies of the tiny sample model (`curation-samples/tiny-llama-chat`, its own revision each) "
        f"on the Hub test server, which answers **every request after {args.latency * 1000:.0f} ms**;",
        "- Prefect server and the catalog store on PostgreSQL 15 (a private cluster); Azurite with three regions;",
        "- cells on a stand-in runtime: hf-serve's image as builders/recipes/offline.py builds it (the shared "
        "entrypoint fetches the staged weights from blob storage and verifies their signature and every sha256 with "
        "its locked model-signing venv) whose server is benchmarks/scale_standin.py, answering after a fixed 50 ms + "
        '10 ms/token: I/O-bound; GPU cells end "no worker online" at once. The weekly image refresh checks it as '
        "hf-serve's image (`images.runtimes = [\"hf-serve\"]`, the stand-in's recipe in the weekly run's process);",
        f"- `orchestration.max_parallel_models = {MAX_PARALLEL}`, `hub_downloads = {LIMITS['hub_downloads']}`, "
        f"`blob_uploads = {LIMITS['blob_uploads']}`; each worker runs one model at a time (`--limit 1`).",
        *(
            [
                "",
                f"**{args.models} models, fewer than the {GOAL_MODELS} of issue 14's goal:** a shorter run; the "
                "fixed part of a weekly run (discovery, screening, export) weighs more in it.",
            ]
            if args.models < GOAL_MODELS
            else []
        ),
        "",
        "| workers | makespan (s) | vs 1 worker | machine CPU busy | peak Hub downloads (limit) "
        "| peak blob uploads (limit) | peak model runs | models | run |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        models = ", ".join(f"{n} {k}" for k, n in r.outcomes.items())
        lines.append(
            f"| {r.workers} | {r.makespan_s:.0f} | {r.makespan_s / base:.2f}x | {100 * r.cpu_busy:.0f}% "
            f"| {r.peak_downloads} "
            f"({LIMITS['hub_downloads']}) | {r.peak_uploads} ({LIMITS['blob_uploads']}) | {r.peak_models} "
            f"| {models} | {r.status} |"
        )
    return "\n".join(lines) + "\n" + notes(results)


def notes(results: list[Result]) -> str:
    """What the numbers say, from the numbers: the goal, and where the time went."""
    base = results[0]
    last = results[-1]
    ratio = last.makespan_s / base.makespan_s
    within = all(
        r.peak_downloads <= LIMITS["hub_downloads"] and r.peak_uploads <= LIMITS["blob_uploads"] for r in results
    )
    lines = [
        "",
        "## What the numbers say",
        "",
        f"- Goal: {last.workers} workers <= 0.35x the makespan of 1. Measured: **{ratio:.2f}x** "
        f"({'met' if ratio <= 0.35 else 'not met'}).",
        f"- Hub downloads and blob uploads stayed within their limits in every run: **{'yes' if within else 'NO'}**.",
        f"- With one worker the machine's CPU was {100 * base.cpu_busy:.0f}% busy, with {last.workers} "
        f"{100 * last.cpu_busy:.0f}% (every model's flow run is a new Python process that imports Prefect and the "
        "pipeline, and every cell starts a container: CPU work that all workers share on this machine's "
        f"{os.cpu_count()} cores; on machines of their own, what a worker is in production, it does not add up).",
    ]
    return "\n".join(lines) + "\n"


def second_week_markdown(week: SecondWeek) -> str:
    """The second run with nothing new: its time against the first, and its ten costliest flow and task runs."""
    share = week.makespan_s / week.first_s
    models = ", ".join(f"{n} {k}" for k, n in week.outcomes.items())
    lines = [
        "",
        "## A second week with nothing new",
        "",
        f"Right after the {week.workers}-worker run, the same weekly run again on the same catalog, nothing changed "
        f"upstream: **{week.makespan_s:.1f} s, {100 * share:.1f}% of the first run's {week.first_s:.0f} s** "
        f"(goal: under 5% and under 60 s: {'met' if share < 0.05 and week.makespan_s < 60 else 'not met'}); "
        f"machine CPU {100 * week.cpu_busy:.0f}% busy; {week.hub_requests} Hub requests; models: {models or 'none'}.",
        "",
        "Image checks included: the weekly image refresh found hf-serve's recipe unchanged, its image in the "
        "registry, recorded, scanned and signed, and verified its signature again (the `build-runtime-images` row).",
        "",
        "Where it went (Prefect's run times; a flow's time includes its subflows and tasks):",
        "",
        "| flow or task run | runs | seconds in all |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {name} | {count} | {seconds:.1f} |" for name, (count, seconds) in list(week.profile.items())[:12]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=40)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--latency", type=float, default=0.25, help="seconds the Hub test server adds to each request")
    parser.add_argument("--write-doc", action="store_true")
    args = parser.parse_args(argv)
    args.load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    results: list[Result] = []
    week2: SecondWeek | None = None
    with ExitStack() as cleanup:
        t0 = time.monotonic()
        stack = start_stack(work, models=args.models, latency_s=args.latency, cleanup=cleanup)
        setup_s = time.monotonic() - t0
        for workers in args.workers:
            result, again = run_once(stack, workers, again=week2 is None)
            print(result, again, flush=True)
            results.append(result)
            week2 = week2 or again
    text = markdown(results, args, setup_s) + (second_week_markdown(week2) if week2 else "")
    print(text)
    if args.write_doc:
        OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
