# The two commands a newcomer needs: `make demo` (a weekly curation run on the local stack) and `make test`.
.PHONY: demo test test-fast lint setup down lock lock-upgrade lock-check bench-screen bench-stage bench-throughput bench-scale

demo:
	bash scripts/demo.sh

test:
	bash scripts/test.sh

# The edit-test loop: lint, then every test that needs neither the integration servers nor Docker (~2 min).
test-fast: lint
	.venv/bin/python -m pytest -q -p no:cacheprovider -m "not integration and not docker"

setup:
	bash scripts/install-system.sh
	bash scripts/bootstrap.sh

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	.venv/bin/lint-imports
	.venv/bin/python scripts/check_size.py

down:
	.venv/bin/curate dev down

# Dependency locks (docs/development.md): `lock` adds what the inputs need and keeps every existing pin,
# `lock-upgrade` moves every pin to the newest compatible release, `lock-check` fails if `lock` would change a file.
lock: setup
	.venv/bin/python scripts/lock.py

lock-upgrade: setup
	.venv/bin/python scripts/lock.py --upgrade

lock-check: setup
	.venv/bin/python scripts/lock.py --check

# Benchmarks run on demand (never in `make test`); each writes its results under docs/benchmarks/.
bench-screen: setup
	.venv/bin/python -m benchmarks.bench_screen

bench-stage: setup
	.venv/bin/python -m benchmarks.bench_stage

# 40 sample models curated by 1, 2 and 4 workers (PostgreSQL, Prefect server, Hub latency); docs/benchmarks/scale.md.
bench-scale: setup
	.venv/bin/python -m benchmarks.bench_scale --write-doc

# GuideLLM gets a venv of its own (benchmarks/guidellm_venv.sh); the comparison rewrites docs/benchmarks/throughput.md.
bench-throughput: setup
	bash benchmarks/guidellm_venv.sh
	.venv/bin/python -m benchmarks.bench_throughput_vs_guidellm --write-doc
