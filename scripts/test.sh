#!/usr/bin/env bash
# The README's test command (`make test`): sets up everything from nothing, lints, then runs the whole suite.
# Fails when pytest fails, when it collects no test (exit 5), or when lint fails.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bash scripts/install-system.sh
bash scripts/bootstrap.sh
. .venv/bin/activate
export PREFECT_SERVER_ANALYTICS_ENABLED=false
echo "== lint (ruff, ruff format, mypy --strict, import contracts, size rule)"
ruff check .
ruff format --check .
mypy
lint-imports
python scripts/check_size.py
echo "== tests"
mkdir -p .cache/test-reports
set +e
python -m pytest -p no:cacheprovider --junitxml=.cache/test-reports/junit.xml "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit "$rc"
