"""`python -m devstack.samples --root DIR [--no-real] [--cache-dir DIR] [--json]`: build the sample repos."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from devstack.samples.build import build_samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.samples", description=__doc__)
    parser.add_argument("--root", type=Path, required=True, help="RepoStore root to build into")
    parser.add_argument("--no-real", action="store_true", help="skip the two real models (SmolLM2, MiniLM)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="where generated weights are cached")
    parser.add_argument("--json", action="store_true", help="print the SampleSet as JSON")
    args = parser.parse_args(argv)
    started = time.monotonic()
    sample_set = build_samples(args.root, include_real=not args.no_real, cache_dir=args.cache_dir)
    if args.json:
        sys.stdout.write(sample_set.model_dump_json(indent=2) + "\n")
        return 0
    for sample in sample_set.samples:
        codes = ",".join(sample.expected_codes) or "-"
        sys.stdout.write(
            f"{sample.repo_id:45} {sample.revision[:12]} {sample.kind.value:20} "
            f"{sample.expected_verdict.value:13} {codes}\n"
        )
    sys.stdout.write(f"{len(sample_set.samples)} repos in {args.root} ({time.monotonic() - started:.1f} s)\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
