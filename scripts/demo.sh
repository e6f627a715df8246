#!/usr/bin/env bash
# The README's demo command (`make demo`): sets up everything from nothing, starts the local stack on 127.0.0.1
# (Hub test server with the sample repos, Prefect server with its UI, and the later stages' services), runs one
# weekly curation on the local defaults, and prints the catalog and where to look.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bash scripts/install-system.sh
bash scripts/bootstrap.sh
. .venv/bin/activate
export PREFECT_SERVER_ANALYTICS_ENABLED=false
curate dev up
curate run
curate catalog candidates
curate catalog list
eval "$(curate dev env)"
echo
echo "Prefect UI: ${PREFECT_API_URL%/api}   (flow runs, logs and every decision as artifacts)"
echo "Artifacts from the shell:  eval \"\$(.venv/bin/curate dev env)\" && .venv/bin/prefect artifact ls"
echo "Stop the local stack:      .venv/bin/curate dev down"
