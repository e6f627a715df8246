"""`curate bench` and GuideLLM 0.8.1 against a server whose timing is known exactly, and the harness's overhead.

    python -m benchmarks.bench_throughput_vs_guidellm [--levels 1,16,64,256] [--rounds 2] [--per-stream 3]
        [--min-requests 10] [--overhead-requests 300] [--guidellm PATH] [--skip-guidellm] [--write-doc]

1. Starts the ground-truth server (devstack/ground_truth.py) in a process of its own: TTFT 0.2 s, a token every
   20 ms, 32 tokens, so the truth is TTFT 0.2 s, ITL 0.02 s, e2e 0.82 s whatever the concurrency; it reports
   how late it wrote each token (the numbers only measure the clients while it is on time).
2. At each concurrency level, each round runs `curate bench --json` (a subprocess, exactly what users run) and
   GuideLLM (a subprocess from its own virtual environment) on the same prompts (128 tokens of the SmolLM2
   tokenizer, seed 0; max 32 output tokens), alternating which tool goes first; the server's stats are reset
   before and read after every run, and the 1-minute load average is read around it.
3. Reports each tool's median TTFT, ITL and e2e as an error against the truth.
4. Overhead: wall time per request of the harness against a trivial endpoint (the same server with no delays:
   16 tokens written at once), next to a bare httpx streaming loop, and the harness's CPU per streamed token at
   the highest level (from its own process's CPU time).

GuideLLM lives in a venv of its own (it pins other versions than this project's lock): `bash
benchmarks/guidellm_venv.sh` makes .cache/guidellm-venv. Results: benchmarks/out/throughput_vs_guidellm.json;
with --write-doc, docs/benchmarks/throughput.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.throughput_doc import write_doc  # noqa: E402
from devstack.ground_truth import Schedule, server_stats, start_ground_truth  # noqa: E402
from devstack.net import free_port  # noqa: E402
from devstack.samples import build_samples  # noqa: E402
from devstack.samples.build import export_repo  # noqa: E402
from validators.prompts import PromptFactory  # noqa: E402
from validators.throughput import LoadSpec, run_benchmark  # noqa: E402

TOKENIZER_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
TRUTH = Schedule(ttft_s=0.2, itl_s=0.02, tokens=32, model="ground-truth")
INPUT_TOKENS = 128
OUT = ROOT / "benchmarks" / "out"
GUIDELLM = ROOT / ".cache" / "guidellm-venv" / "bin" / "guidellm"
SEED = 0
METRICS = ("ttft", "itl", "e2e")
TRUE_VALUES = {"ttft": TRUTH.ttft_s, "itl": TRUTH.itl_s, "e2e": TRUTH.e2e_s()}


def _tokenizer_dir() -> Path:
    target = OUT / "model-smollm2"
    if not (target / "tokenizer.json").is_file():
        export_repo(build_samples(ROOT / ".cache" / "samples").store(), TOKENIZER_MODEL, target)
    return target


def _load() -> float:
    return os.getloadavg()[0]


def _write_prompts(path: Path, tokenizer: Path, count: int) -> None:
    factory = PromptFactory(tokenizer, seed=SEED)  # the harness's seed and order: both tools send the same prompts
    with path.open("w") as handle:
        for index in range(count):
            row = {"prompt": factory.make(INPUT_TOKENS, index), "output_tokens_count": TRUTH.tokens}
            handle.write(json.dumps(row | {"prompt_tokens_count": INPUT_TOKENS}) + "\n")


def _ours(base_url: str, tokenizer: Path, level: int, count: int) -> dict[str, Any]:
    argv = [str(ROOT / ".venv" / "bin" / "curate"), "bench", base_url, "--model", TRUTH.model]
    argv += ["--profile", "synchronous" if level == 1 else "concurrent", "--concurrency", str(level)]
    argv += ["--max-requests", str(count), "--max-duration", "600", "--input-tokens", str(INPUT_TOKENS)]
    argv += ["--output-tokens", str(TRUTH.tokens), "--tokenizer", str(tokenizer), "--seed", str(SEED), "--json"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"curate bench failed ({result.returncode}): {result.stderr[-2000:]}")
    (metrics,) = json.loads(result.stdout)
    if metrics["errors"] or metrics["requests"] != count:
        raise RuntimeError(f"curate bench: {metrics['requests']} ok, {metrics['errors']} errors of {count}")
    lag = metrics["read_lag_s"] or {}
    return {
        "ttft": metrics["ttft_s"]["p50"],
        "itl": metrics["itl_s"]["p50"],
        "e2e": metrics["e2e_s"]["p50"],
        "tpot": metrics["tpot_s"]["p50"],
        "read_lag_p50_ms": lag.get("p50", 0.0) * 1e3,
        "read_lag_p99_ms": lag.get("p99", 0.0) * 1e3,
    }


def _guidellm(binary: Path, root_url: str, tokenizer: Path, prompts: Path, level: int, count: int) -> dict[str, Any]:
    out = prompts.with_name(f"guidellm-{level}.json")
    profile = "kind=synchronous" if level == 1 else f"kind=concurrent,streams={level}"
    backend = f"kind=openai_http,target={root_url},model={TRUTH.model},extras.body.ignore_eos=null"
    argv = [str(binary), "run", "--backend", backend + ",extras.body.temperature=0", "--profile", profile]
    argv += ["--data", f"kind=json_file,path={prompts}", "--data-loader", f"kind=pytorch,samples={count}"]
    argv += ["--tokenizer", f"kind=hf_auto,model={tokenizer}", "--constraint", f"kind=max_requests,count={count}"]
    argv += ["--output", f"kind=json,path={out}", "--disable-console-interactive"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=1800, check=False)
    if result.returncode != 0 or not out.is_file():
        raise RuntimeError(f"guidellm failed ({result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    benchmark = json.loads(out.read_text())["benchmarks"][0]
    errored = len(benchmark["requests"].get("errored") or [])
    successful = len(benchmark["requests"].get("successful") or [])
    if errored or successful != count:
        raise RuntimeError(f"guidellm: {successful} successful, {errored} errored of {count}; see {out}")
    metrics = benchmark["metrics"]

    def median(name: str) -> float:
        return float(metrics[name]["successful"]["median"])

    return {
        "ttft": median("time_to_first_token_ms") * 1e-3,
        "itl": median("inter_token_latency_ms") * 1e-3,  # per request (e2e - ttft) / (n - 1)
        "e2e": median("request_latency"),
    }


def _measured(tool: str, run: Callable[[], dict[str, Any]], root_url: str) -> dict[str, Any]:
    """One tool's run with the server's stats and the machine's load around it."""
    server_stats(root_url, reset=True)
    load_before = _load()
    started = time.perf_counter()
    values = run()
    wall = time.perf_counter() - started
    stats = server_stats(root_url, reset=True)
    errors = {name: values[name] / TRUE_VALUES[name] - 1 for name in METRICS}
    return {
        "tool": tool,
        "values": values,
        "error": errors,
        "wall_s": wall,
        "load": [load_before, _load()],
        "server": {
            "lateness_ms": stats["lateness_ms"],
            "first_token_lateness_ms": stats["first_token_lateness_ms"],
            "aborted": stats["aborted"],
            "peak": stats["max_in_flight"],
        },
    }


def _compare(args: argparse.Namespace, tokenizer: Path, work: Path) -> list[dict[str, Any]]:
    port = free_port()
    server = start_ground_truth(TRUTH, port=port, log_path=work / "ground-truth.log")
    root_url = f"http://127.0.0.1:{port}"
    runs: list[dict[str, Any]] = []
    try:
        _ours(root_url + "/v1", tokenizer, 4, 8)  # warm up (first connections, page cache)
        for round_index in range(args.rounds):
            for level_index, level in enumerate(args.levels):
                count = max(args.min_requests, level * args.per_stream)
                prompts = work / f"prompts-{level}.jsonl"
                _write_prompts(prompts, tokenizer, count)
                tools = ["ours"] if args.skip_guidellm else ["ours", "guidellm"]
                if (round_index + level_index) % 2:
                    tools.reverse()
                for tool in tools:
                    print(f"round {round_index + 1}, c={level}, {count} requests: {tool} ...", flush=True)
                    if tool == "ours":
                        measure = partial(_ours, root_url + "/v1", tokenizer, level, count)
                    else:
                        measure = partial(_guidellm, args.guidellm, root_url, tokenizer, prompts, level, count)
                    run = _measured(tool, measure, root_url)
                    run |= {"round": round_index + 1, "level": level, "requests": count, "position": tools.index(tool)}
                    runs.append(run)
                    print(json.dumps({k: run[k] for k in ("error", "load", "server")}), flush=True)
        return runs
    finally:
        server.stop()


async def _bare_httpx(url: str, count: int) -> float:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16, "stream": True}
    async with httpx.AsyncClient(timeout=30) as client:
        started = time.perf_counter()
        for _ in range(count):
            async with client.stream("POST", url, json=body) as response:
                async for _line in response.aiter_lines():
                    pass
        return (time.perf_counter() - started) / count


def _overhead(count: int, work: Path) -> dict[str, Any]:
    """Wall time per request against a trivial endpoint: our harness vs a bare httpx streaming loop."""
    port = free_port()
    server = start_ground_truth(Schedule(ttft_s=0, itl_s=0, tokens=16), port=port, log_path=work / "trivial.log")
    base = f"http://127.0.0.1:{port}/v1"
    try:
        asyncio.run(_bare_httpx(base + "/chat/completions", 20))  # warm up
        bare = statistics.median(asyncio.run(_bare_httpx(base + "/chat/completions", count)) for _ in range(3))
        ours = []
        for _ in range(3):
            spec = LoadSpec(profile="synchronous", max_requests=count, max_duration_s=600, input_tokens=8)
            started = time.perf_counter()
            (metrics,) = run_benchmark(base, "m", spec)
            ours.append(((time.perf_counter() - started) / count, metrics.e2e_s.mean if metrics.e2e_s else 0.0))
        return {
            "requests": count,
            "bare_httpx_wall_per_request_ms": bare * 1e3,
            "ours_wall_per_request_ms": statistics.median(r[0] for r in ours) * 1e3,
            "ours_measured_e2e_mean_ms": statistics.median(r[1] for r in ours) * 1e3,
        }
    finally:
        server.stop()


def _cpu_per_token(level: int, count: int, tokenizer: Path, work: Path) -> dict[str, Any]:
    """The harness's own CPU time per streamed token at `level` streams (in this process, server in its own)."""
    port = free_port()
    server = start_ground_truth(TRUTH, port=port, log_path=work / "cpu.log")
    try:
        spec = LoadSpec(
            profile="concurrent",
            concurrency=level,
            max_requests=count,
            max_duration_s=600,
            input_tokens=INPUT_TOKENS,
            output_tokens=TRUTH.tokens,
        )
        before = resource.getrusage(resource.RUSAGE_SELF)
        load = _load()
        (metrics,) = run_benchmark(f"http://127.0.0.1:{port}/v1", TRUTH.model, spec)  # word prompts: cheap to build
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        events = metrics.requests * (TRUTH.tokens + 3)  # tokens, finish, usage, [DONE]
        return {"level": level, "requests": count, "cpu_s": cpu, "us_per_event": cpu / events * 1e6, "load": load}
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", type=lambda v: [int(x) for x in v.split(",")], default=[1, 16, 64, 256])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--per-stream", type=int, default=3, help="requests per stream at each level")
    parser.add_argument("--min-requests", type=int, default=10)
    parser.add_argument("--overhead-requests", type=int, default=300)
    parser.add_argument("--guidellm", type=Path, default=GUIDELLM)
    parser.add_argument("--skip-guidellm", action="store_true")
    parser.add_argument("--write-doc", action="store_true")
    args = parser.parse_args()
    if not args.skip_guidellm and not args.guidellm.is_file():
        parser.error(f"{args.guidellm} not found: install GuideLLM in its own venv (see --help) or --skip-guidellm")

    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    tokenizer = _tokenizer_dir()
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}",
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "truth": TRUE_VALUES,
    }
    try:
        result["runs"] = _compare(args, tokenizer, work)
        print("overhead against a trivial endpoint ...", flush=True)
        result["overhead"] = _overhead(args.overhead_requests, work)
        top = max(args.levels)
        result["cpu"] = _cpu_per_token(top, max(args.min_requests, top * args.per_stream), tokenizer, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"overhead": result["overhead"], "cpu": result["cpu"]}, indent=2), flush=True)
    (OUT / "throughput_vs_guidellm.json").write_text(json.dumps(result, indent=2) + "\n")
    if args.write_doc:
        write_doc(result, ROOT / "docs" / "benchmarks" / "throughput.md")


if __name__ == "__main__":
    main()
