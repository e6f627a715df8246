#!/usr/bin/env bash
# GuideLLM 0.8.1 in a virtual environment of its own, for benchmarks/bench_throughput_vs_guidellm.py (which runs
# it as a subprocess). It pins other versions than this project's lock, so it never goes into .venv; and its
# resolver would pull a CUDA torch (GBs), so its dependency list is installed with --no-deps, torch left out, and
# the local CPU torch build (requirements/constraints.in) installed instead.
#   bash benchmarks/guidellm_venv.sh [VENV]      (default .cache/guidellm-venv; does nothing when it exists)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv="${1:-$here/.cache/guidellm-venv}"
if [ -x "$venv/bin/guidellm" ]; then
  exit 0
fi
python3.11 -m venv "$venv"
pip="$venv/bin/pip"
listed=$("$pip" install --dry-run guidellm==0.8.1 | sed -n 's/^Would install //p')
if [ -z "$listed" ]; then
  echo "pip could not resolve guidellm==0.8.1: is the package index reachable?" >&2
  exit 1
fi
# "name-version" -> "name==version", without torch and the CUDA stack it would bring.
deps=$(tr ' ' '\n' <<<"$listed" | grep -v -E '^(torch|nvidia|cuda|triton)' | sed -E 's/^(.*)-([^-]+)$/\1==\2/')
torch_pin=$(grep -m1 '^torch==' "$here/requirements/constraints.in")
local_wheels=()
[ -d /opt/wheels ] && local_wheels=(--find-links /opt/wheels)
# shellcheck disable=SC2086
"$pip" install -q --no-deps "${local_wheels[@]}" $deps "$torch_pin"
"$venv/bin/guidellm" --version
