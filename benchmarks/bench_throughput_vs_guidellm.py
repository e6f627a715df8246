"""Compare `validators.throughput` with GuideLLM 0.8.1 on the same server, and measure the harness's own overhead.

    python benchmarks/bench_throughput_vs_guidellm.py [--requests 6] [--rounds 2] [--input-tokens 64]
        [--output-tokens 12] [--concurrency 1] [--overhead-requests 300] [--write-doc]

1. Starts `transformers serve --device cpu` with the SmolLM2-135M-Instruct sample (devstack.samples, built offline)
   on a free loopback port and warms it up.
2. Writes one prompt file (exact token lengths, the model's tokenizer); both tools send exactly these prompts with
   the same max tokens at temperature 0. GuideLLM's `ignore_eos` is removed (`extras.body.ignore_eos=null`: the
   server answers 422 to unknown fields).
3. For each round, runs both tools (alternating which goes first) with the same profile; reports each shared metric
   and the ratio ours / GuideLLM (medians of the per-round values).
4. Overhead: against a trivial local streaming endpoint (a subprocess that answers 16 chunks at once), the wall time
   per request of our harness vs a bare httpx streaming loop at concurrency 1 (and GuideLLM's, for reference).

Results: benchmarks/out/throughput_vs_guidellm.json and, with --write-doc, docs/benchmarks/throughput.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from devstack.net import free_port  # noqa: E402
from devstack.runtimes import start_hf_serve, warm_up  # noqa: E402
from devstack.samples import build_samples  # noqa: E402
from devstack.samples.build import export_repo  # noqa: E402
from validators.prompts import PromptFactory  # noqa: E402
from validators.throughput import LoadSpec, run_benchmark  # noqa: E402

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
OUT = ROOT / "benchmarks" / "out"
DOC = ROOT / "docs" / "benchmarks" / "throughput.md"
SEED = 0

# metric name -> (ours from BenchmarkMetrics, GuideLLM path in its JSON benchmark, scale to seconds)
SHARED = {
    "TTFT p50 (s)": (lambda m: m.ttft_s.p50, ("time_to_first_token_ms", "median"), 1e-3),
    "ITL p50 (s) [ours: gaps; GuideLLM: per-request (e2e-ttft)/(n-1)]": (
        lambda m: m.itl_s.p50,
        ("inter_token_latency_ms", "median"),
        1e-3,
    ),
    "TPOT p50 (s) [ours: (e2e-ttft)/(n-1); GuideLLM: ITL]": (
        lambda m: m.tpot_s.p50,
        ("inter_token_latency_ms", "median"),
        1e-3,
    ),
    "e2e latency p50 (s)": (lambda m: m.e2e_s.p50, ("request_latency", "median"), 1.0),
    "requests/s": (lambda m: m.request_throughput, ("requests_per_second", "mean"), 1.0),
    "output tokens/s": (lambda m: m.output_token_throughput, ("output_tokens_per_second", "mean"), 1.0),
    "output tokens/request": (
        lambda m: m.output_token_throughput / m.request_throughput,
        ("output_token_count", "median"),
        1.0,
    ),
}


def _model_dir() -> Path:
    samples = build_samples(ROOT / ".cache" / "samples")
    target = OUT / "model-smollm2"
    if not (target / "config.json").is_file():
        export_repo(samples.store(), MODEL, target)
    return target


def _write_prompts(path: Path, model_dir: Path, count: int, input_tokens: int, output_tokens: int) -> None:
    factory = PromptFactory(model_dir, seed=SEED)  # same seed + order as our harness: identical prompts
    with path.open("w") as handle:
        for index in range(count):
            prompt = factory.make(input_tokens, index)
            row = {"prompt": prompt, "prompt_tokens_count": input_tokens, "output_tokens_count": output_tokens}
            handle.write(json.dumps(row) + "\n")


def _guidellm(root_url: str, model_dir: Path, prompts: Path, count: int, concurrency: int, out: Path) -> dict[str, Any]:
    binary = shutil.which("guidellm") or str(Path(sys.executable).with_name("guidellm"))
    profile = "kind=synchronous" if concurrency == 1 else f"kind=concurrent,streams={concurrency}"
    argv = [
        binary,
        "run",
        "--backend",
        f"kind=openai_http,target={root_url},model={MODEL},extras.body.ignore_eos=null,extras.body.temperature=0",
        "--profile",
        profile,
        "--data",
        f"kind=json_file,path={prompts}",
        "--data-loader",
        f"kind=pytorch,samples={count}",
        "--tokenizer",
        f"kind=hf_auto,model={model_dir}",
        "--constraint",
        f"kind=max_requests,count={count}",
        "--output",
        f"kind=json,path={out}",
        "--disable-console-interactive",
    ]
    started = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, timeout=1800, check=False)
    wall = time.perf_counter() - started
    if result.returncode != 0 or not out.is_file():
        raise RuntimeError(f"guidellm failed ({result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    benchmark = json.loads(out.read_text())["benchmarks"][0]
    metrics = benchmark["metrics"]
    errored = len(benchmark["requests"].get("errored") or [])
    successful = len(benchmark["requests"].get("successful") or [])
    if errored or successful != count:
        raise RuntimeError(f"guidellm: {successful} successful, {errored} errored of {count}; see {out}")
    values = {name: metrics[path[0]]["successful"][path[1]] * scale for name, (_, path, scale) in SHARED.items()}
    return {"values": values, "wall_s": wall, "successful": successful}


def _ours(
    base_url: str, model_dir: Path, count: int, concurrency: int, input_tokens: int, output_tokens: int
) -> dict[str, Any]:
    spec = LoadSpec(
        profile="synchronous" if concurrency == 1 else "concurrent",
        concurrency=concurrency,
        max_requests=count,
        max_duration_s=1800,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        seed=SEED,
    )
    started = time.perf_counter()
    (metrics,) = run_benchmark(base_url, MODEL, spec, tokenizer_dir=model_dir)
    wall = time.perf_counter() - started
    if metrics.errors or metrics.requests != count:
        raise RuntimeError(f"our harness: {metrics.requests} ok, {metrics.errors} errors of {count}")
    values = {name: getter(metrics) for name, (getter, _, _) in SHARED.items()}
    return {"values": values, "wall_s": wall, "metrics": metrics.model_dump(mode="json")}


# ------------------------------------------------------------------------------------------ overhead

TRIVIAL_SERVER = r"""
import json, sys
from starlette.applications import Starlette
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route
import uvicorn

def chunk(i, delta, finish=None):
    return {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

BODY = "".join(
    "data: " + json.dumps(c) + "\n\n"
    for c in [chunk(0, {"role": "assistant"})] + [chunk(i, {"content": " tok"}) for i in range(16)]
    + [chunk(16, {}, "length"), {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
       "choices": [], "usage": {"prompt_tokens": 8, "completion_tokens": 16, "total_tokens": 24}}]
) + "data: [DONE]\n\n"

async def chat(request):
    await request.body()
    async def gen():
        yield BODY
    return StreamingResponse(gen(), media_type="text/event-stream")

async def models(request):
    return JSONResponse({"object": "list", "data": [{"id": "m", "object": "model", "created": 1, "owned_by": "x"}]})

async def health(request):
    return JSONResponse({"status": "ok"})

app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]), Route("/v1/models", models),
                        Route("/health", health)])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


async def _bare_loop(url: str, count: int) -> float:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16, "stream": True}
    async with httpx.AsyncClient(timeout=30) as client:
        started = time.perf_counter()
        for _ in range(count):
            async with client.stream("POST", url, json=body) as response:
                async for _line in response.aiter_lines():
                    pass
        return (time.perf_counter() - started) / count


def _overhead(count: int, work: Path) -> dict[str, Any]:
    port = free_port()
    script = work / "trivial_server.py"
    script.write_text(TRIVIAL_SERVER)
    server = subprocess.Popen([sys.executable, str(script), str(port)], start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        base = f"http://127.0.0.1:{port}/v1"
        asyncio.run(_bare_loop(base + "/chat/completions", 20))  # warm up
        bare = statistics.median(asyncio.run(_bare_loop(base + "/chat/completions", count)) for _ in range(3))
        ours_runs = []
        for _ in range(3):
            spec = LoadSpec(
                profile="synchronous", max_requests=count, max_duration_s=600, input_tokens=8, output_tokens=16
            )
            started = time.perf_counter()
            (metrics,) = run_benchmark(base, "m", spec)
            ours_runs.append(((time.perf_counter() - started) / count, metrics))
        ours_wall = statistics.median(r[0] for r in ours_runs)
        ours_e2e = statistics.median(r[1].e2e_s.mean for r in ours_runs if r[1].e2e_s)
        return {
            "requests": count,
            "bare_httpx_wall_per_request_ms": bare * 1e3,
            "ours_wall_per_request_ms": ours_wall * 1e3,
            "ours_measured_e2e_mean_ms": ours_e2e * 1e3,
            "ours_overhead_per_request_ms": (ours_wall - bare) * 1e3,
        }
    finally:
        server.terminate()
        server.wait(timeout=10)


# ------------------------------------------------------------------------------------------ main


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--input-tokens", type=int, default=64)
    parser.add_argument("--output-tokens", type=int, default=12)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--overhead-requests", type=int, default=300)
    parser.add_argument("--skip-guidellm", action="store_true")
    parser.add_argument("--write-doc", action="store_true")
    args = parser.parse_args()

    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-guidellm-"))
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, python {platform.python_version()}",
        "settings": vars(args),
        "rounds": [],
    }
    print("overhead against a trivial endpoint ...", flush=True)
    result["overhead"] = _overhead(args.overhead_requests, work)
    print(json.dumps(result["overhead"], indent=2), flush=True)

    if not args.skip_guidellm:
        model_dir = _model_dir()
        prompts = work / "prompts.jsonl"
        _write_prompts(prompts, model_dir, args.requests, args.input_tokens, args.output_tokens)
        process = start_hf_serve({MODEL: model_dir}, port=free_port(), workdir=work / "serve")
        try:
            warm_up(process, MODEL)
            for round_index in range(args.rounds):
                order = ["ours", "guidellm"] if round_index % 2 == 0 else ["guidellm", "ours"]
                entry: dict[str, Any] = {"order": order}
                for tool in order:
                    print(f"round {round_index + 1}: {tool} ...", flush=True)
                    if tool == "ours":
                        entry["ours"] = _ours(
                            process.base_url,
                            model_dir,
                            args.requests,
                            args.concurrency,
                            args.input_tokens,
                            args.output_tokens,
                        )
                    else:
                        out = work / f"guidellm-{round_index}.json"
                        entry["guidellm"] = _guidellm(
                            process.root_url, model_dir, prompts, args.requests, args.concurrency, out
                        )
                entry["ratio"] = {
                    name: _ratio(entry["ours"]["values"][name], entry["guidellm"]["values"][name]) for name in SHARED
                }
                result["rounds"].append(entry)
                print(json.dumps(entry["ratio"], indent=2), flush=True)
        finally:
            process.stop()
        result["median_ratio"] = {
            name: statistics.median(r["ratio"][name] for r in result["rounds"]) for name in SHARED
        }
    (OUT / "throughput_vs_guidellm.json").write_text(json.dumps(result, indent=2) + "\n")
    if args.write_doc:
        _write_doc(result)
    shutil.rmtree(work, ignore_errors=True)


def _write_doc(result: dict[str, Any]) -> None:
    s = result["settings"]
    o = result["overhead"]
    lines = [
        "# Throughput benchmark: validators.throughput vs GuideLLM 0.8.1",
        "",
        f"Measured {result['date']} on this repository's CI-class machine ({result['machine']}; 2 cores shared with",
        "other jobs) by `python benchmarks/bench_throughput_vs_guidellm.py --write-doc`"
        f" (`--requests {s['requests']} --rounds {s['rounds']} --input-tokens {s['input_tokens']}"
        f" --output-tokens {s['output_tokens']} --concurrency {s['concurrency']}`).",
        "Raw numbers: `benchmarks/out/throughput_vs_guidellm.json` (not committed).",
        "",
        "## Same server, same prompts",
        "",
        f"`transformers serve --device cpu` with SmolLM2-135M-Instruct (bf16), warmed up. Both tools sent the same"
        f" {s['requests']} prompts of exactly {s['input_tokens']} tokens (plus the chat template) with max"
        f" {s['output_tokens']} output tokens at temperature 0, profile"
        f" {'synchronous' if s['concurrency'] == 1 else 'concurrent ' + str(s['concurrency'])}; the order of the two"
        " tools alternates per round.",
        "",
    ]
    if result.get("rounds"):
        header = "| metric | " + " | ".join(f"round {i + 1} ours / GuideLLM" for i in range(len(result["rounds"])))
        lines += [header + " | median ratio |", "|" + " --- |" * (len(result["rounds"]) + 2)]
        for name in SHARED:
            cells = [
                f"{r['ours']['values'][name]:.4g} / {r['guidellm']['values'][name]:.4g} ({r['ratio'][name]:.2f})"
                for r in result["rounds"]
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + f" | **{result['median_ratio'][name]:.2f}** |")
        lines.append("")
    lines += [
        "## Harness overhead",
        "",
        f"Against a trivial local endpoint (a separate process streaming 16 chunks + usage + [DONE] at once), "
        f"{o['requests']} sequential requests, median of 3 runs:",
        "",
        "| | wall time per request |",
        "| --- | --- |",
        f"| bare httpx streaming loop | {o['bare_httpx_wall_per_request_ms']:.2f} ms |",
        f"| validators.throughput (synchronous) | {o['ours_wall_per_request_ms']:.2f} ms |",
        f"| overhead of the harness | **{o['ours_overhead_per_request_ms']:.2f} ms** per request |",
        "",
        f"The harness's own measured e2e latency on that endpoint: {o['ours_measured_e2e_mean_ms']:.2f} ms mean.",
    ]
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
