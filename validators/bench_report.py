"""Benchmark results out: JSON, CSV, a latency-vs-throughput PNG for sweeps, a Prefect table artifact."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from registry.schema import BenchmarkMetrics

_LATENCIES = ("ttft_s", "tpot_s", "itl_s", "e2e_s", "read_lag_s")
_STATS = ("mean", "p50", "p90", "p99")


def flat_row(metrics: BenchmarkMetrics) -> dict[str, Any]:
    """One CSV/table row: scalar fields plus `<latency>_<stat>` columns (`read_lag_*`: the harness's own delay)."""
    row: dict[str, Any] = {
        "profile": metrics.profile,
        "concurrency": metrics.concurrency,
        "rate": metrics.rate,
        "requests": metrics.requests,
        "errors": metrics.errors,
        "cancelled": metrics.cancelled,
        "timeouts": metrics.timeouts,
        "duration_s": round(metrics.duration_s, 4),
        "request_throughput": round(metrics.request_throughput, 4),
        "output_token_throughput": round(metrics.output_token_throughput, 3),
        "total_token_throughput": round(metrics.total_token_throughput, 3),
        "goodput": None if metrics.goodput is None else round(metrics.goodput, 4),
        "audio_seconds_per_s": None if metrics.audio_seconds_per_s is None else round(metrics.audio_seconds_per_s, 3),
    }
    for name in _LATENCIES:
        stats = getattr(metrics, name)
        for stat in _STATS:
            row[f"{name.removesuffix('_s')}_{stat}_s"] = None if stats is None else round(getattr(stats, stat), 5)
    return row


def write_json(results: Sequence[BenchmarkMetrics], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([r.model_dump(mode="json") for r in results], indent=2) + "\n")
    return path


def write_csv(results: Sequence[BenchmarkMetrics], path: Path) -> Path:
    rows = [flat_row(r) for r in results]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["profile"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def plot_sweep(results: Sequence[BenchmarkMetrics], path: Path, title: str = "") -> Path:
    """Latency (TTFT p50, TPOT p50, e2e p50) against output-token throughput, one point per load level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [r for r in results if r.requests]
    x = [r.output_token_throughput for r in points]
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for name, label in (("ttft_s", "TTFT p50"), ("tpot_s", "TPOT p50"), ("e2e_s", "e2e p50")):
        y = [getattr(r, name).p50 if getattr(r, name) else float("nan") for r in points]
        axis.plot(x, y, marker="o", label=label)
    for r, xi in zip(points, x, strict=True):
        if r.e2e_s is not None:
            axis.annotate(f"c={r.concurrency:g}" if r.concurrency else f"r={r.rate:g}", (xi, r.e2e_s.p50), fontsize=8)
    axis.set_xlabel("output tokens / s")
    axis.set_ylabel("latency (s)")
    axis.set_yscale("log")
    axis.set_title(title or "latency vs throughput")
    axis.grid(True, alpha=0.3)
    axis.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def publish_table_artifact(results: Sequence[BenchmarkMetrics], key: str, description: str = "") -> bool:
    """A Prefect table artifact of the results when inside a flow/task run; returns whether one was made."""
    from prefect.artifacts import create_table_artifact
    from prefect.context import get_run_context
    from prefect.exceptions import MissingContextError

    try:
        get_run_context()
    except MissingContextError:
        return False
    create_table_artifact(table=[flat_row(r) for r in results], key=key, description=description or "throughput")
    return True
