"""Screening cost: bytes read from the Hub per screened model vs the repository's size, and models per second.

Generates N repositories (default 200) into a temporary RepoStore — safetensors weights of 0.25-16 MiB (some
sharded with an index), some with a torch zip `pytorch_model.bin`, LICENSE files, custom code, gated repos —
serves them with the Hub test server on loopback, and screens every one through the real client, sequentially
and with a thread pool. Writes docs/benchmarks/screening.md.

    python -m benchmarks.bench_screen [--repos 200] [--workers 1 4] [--no-trivy]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import struct
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from devstack.hub_server import HubServer
from devstack.repostore import RepoStore
from devstack.samples import licenses as texts
from registry.hub import HfHubSource
from registry.schema import ScreeningReport
from registry.settings import Settings, load_settings
from scanners.screen import screen_repo

OUT = Path(__file__).resolve().parent.parent / "docs" / "benchmarks" / "screening.md"
MIB = 1024 * 1024


def _safetensors(index: int, shard: int, data_bytes: int) -> bytes:
    """A valid safetensors file holding `data_bytes` of F16 data in 4 tensors (zeros: cheap to generate)."""
    per = (data_bytes // 4) // 2 * 2
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for t in range(4):
        header[f"model.layers.{index}.{shard}.{t}.weight"] = {
            "dtype": "F16",
            "shape": [per // 2],
            "data_offsets": [offset, offset + per],
        }
        offset += per
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + bytes(offset)


def _torch_zip(data_bytes: int) -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        archive.writestr("archive/data/0", bytes(data_bytes))
    return buffer.getvalue()


def build_corpus(store: RepoStore, count: int) -> dict[str, str]:
    """`count` repositories of varied shape; returns repo_id -> sha."""
    shas: dict[str, str] = {}
    sizes = [MIB // 4, MIB, 2 * MIB, 4 * MIB, 8 * MIB, 16 * MIB]
    for i in range(count):
        repo_id = f"bench/model-{i:04d}"
        size = sizes[i % len(sizes)]
        card = "---\nlicense: apache-2.0\nlibrary_name: transformers\npipeline_tag: text-generation\n---\n# m\n"
        files: dict[str, bytes] = {
            "README.md": card.encode(),
            "config.json": json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}).encode(),
            "tokenizer_config.json": b'{"model_max_length": 2048}',
            "generation_config.json": b'{"do_sample": false}',
        }
        if i % 5 == 0:  # sharded with an index
            shards = 3
            weight_map = {}
            for s in range(shards):
                name = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
                files[name] = _safetensors(i, s, size // shards)
                weight_map.update({f"model.layers.{i}.{s}.{t}.weight": name for t in range(4)})
            files["model.safetensors.index.json"] = json.dumps({"weight_map": weight_map}).encode()
        else:
            files["model.safetensors"] = _safetensors(i, 0, size)
        if i % 7 == 0:
            files["pytorch_model.bin"] = _torch_zip(size)
        if i % 3 == 0:
            files["LICENSE"] = texts.APACHE_2_0.encode()
        if i % 11 == 0:
            files["modeling_custom.py"] = b"class Custom: ...\n"
        shas[repo_id] = store.commit(repo_id, files)
        if i % 13 == 0:
            store.set_meta(repo_id, gated="auto")
    return shas


def _screen_all(
    settings: Settings, shas: dict[str, str], workers: int, use_trivy: bool
) -> tuple[list[ScreeningReport], float]:
    source = HfHubSource(settings.hub)

    def one(item: tuple[str, str]) -> ScreeningReport:
        return screen_repo(source, item[0], item[1], settings, use_trivy=use_trivy)

    start = time.perf_counter()
    try:
        if workers == 1:
            reports = [one(item) for item in shas.items()]
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                reports = list(pool.map(one, shas.items()))
    finally:
        source.close()
    return reports, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repos", type=int, default=200)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--no-trivy", action="store_true", help="built-in secret rules only")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    use_trivy = not args.no_trivy

    with tempfile.TemporaryDirectory(prefix="bench-screen-") as tmp:
        store = RepoStore(Path(tmp) / "store")
        t0 = time.perf_counter()
        shas = build_corpus(store, args.repos)
        build_s = time.perf_counter() - t0
        with HubServer(store, tokens=["hf_bench_token_000000000000"]) as hub:
            settings = load_settings(hub={"endpoint": hub.url, "max_retries": 0})
            info_source = HfHubSource(settings.hub)
            repo_sizes = {r: sum(f.size or 0 for f in info_source.model_info(r, s).files) for r, s in shas.items()}
            info_source.close()
            runs: list[tuple[int, bool, float, list[ScreeningReport], int]] = []
            plan = [(w, use_trivy) for w in args.workers]
            if use_trivy:
                plan += [(w, False) for w in args.workers]  # the same without Trivy: its share of the time
            for workers, trivy in plan:
                hub.requests.clear()
                reports, elapsed = _screen_all(settings, shas, workers, trivy)
                runs.append((workers, trivy, elapsed, reports, hub.requests.bytes_sent()))

    _, _, _, reports, _ = runs[0]
    read = [r.bytes_read for r in reports]
    total = [repo_sizes[r.ref.repo_id] for r in reports]
    ratios = [b / t for b, t in zip(read, total, strict=True) if t]
    verdicts: dict[str, int] = {}
    for r in reports:
        verdicts[r.verdict.value] = verdicts.get(r.verdict.value, 0) + 1
    lines = [
        "# Screening benchmark",
        "",
        f"Generated by `python -m benchmarks.bench_screen --repos {args.repos}"
        f"{' --no-trivy' if not use_trivy else ''}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC "
        f"({platform.machine()}, Python {platform.python_version()}; Hub test server on loopback).",
        "",
        f"{args.repos} generated repositories (0.25-16 MiB of safetensors each, every 5th sharded in 3 with an "
        "index, every 7th with a torch zip `pytorch_model.bin` as large as its weights, every 3rd with a "
        "LICENSE, every 11th with custom code, every 13th gated without a token); corpus built in "
        f"{build_s:.1f} s. Verdicts: {', '.join(f'{k} {v}' for k, v in sorted(verdicts.items()))}.",
        "",
        "## Bytes read from the Hub per screened model",
        "",
        "| | bytes read | repository size | read / size |",
        "|---|---:|---:|---:|",
        f"| median | {statistics.median(read):,.0f} | {statistics.median(total):,.0f} | "
        f"{statistics.median(ratios):.4%} |",
        f"| mean | {statistics.mean(read):,.0f} | {statistics.mean(total):,.0f} | {statistics.mean(ratios):.4%} |",
        f"| max | {max(read):,} | {max(total):,} | {max(ratios):.4%} |",
        f"| total | {sum(read):,} | {sum(total):,} | {sum(read) / sum(total):.4%} |",
        "",
        "Bytes read are counted by the scanner's reader (file content only); the server's own count of body "
        "bytes sent, which also includes the API's JSON (model info), is in the next table.",
        "",
        "## Throughput",
        "",
        "| workers | secret scan | models | seconds | models / s | body bytes sent by the server |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for workers, trivy, elapsed, run_reports, sent in runs:
        scan = "Trivy + built-in" if trivy else "built-in only"
        lines.append(
            f"| {workers} | {scan} | {len(run_reports)} | {elapsed:.1f} | {len(run_reports) / elapsed:.1f} | {sent:,} |"
        )
    lines += [
        "",
        "Reading the numbers: screening reads headers and small text files only, so the bytes read do not grow "
        "with the weights (a 16 MiB repository costs the same few KiB as a 0.25 MiB one; the largest reads are "
        "repositories with a LICENSE text, ~11 KiB). Without Trivy a model costs a few Hub round trips (model "
        "info, a small file each, two range reads per safetensors file, two or three per torch zip); with Trivy "
        "one `trivy fs` process per model dominates the time, and parallel workers hide most of it. This machine "
        "has 2 shared cores: compare runs on the same machine only.",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
