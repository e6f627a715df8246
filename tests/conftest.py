"""Root test configuration: an isolated environment for every test run, and the shared fixture modules."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Isolate the run before anything imports prefect or huggingface_hub (both read their settings at import).
_RUN_DIR = Path(tempfile.mkdtemp(prefix="curation-tests-"))
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_HOME"] = str(_RUN_DIR / "prefect")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ["HF_HOME"] = str(_RUN_DIR / "hf")
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ.pop("HF_TOKEN", None)
os.environ.pop("HF_ENDPOINT", None)
os.environ.pop("CURATE_CONFIG", None)
os.environ["CURATE_DATA_DIR"] = str(_RUN_DIR / "curation")
# Registry credentials only from what a test sets: never the machine's Docker login or exported variables.
os.environ["DOCKER_CONFIG"] = str(_RUN_DIR / "docker-config")
os.environ.pop("CURATE_IMAGES__REGISTRY_USERNAME", None)
os.environ.pop("CURATE_IMAGES__REGISTRY_PASSWORD", None)

REPO_ROOT = Path(__file__).resolve().parent.parent

pytest_plugins = [
    "tests.fixtures.prefect",
    "tests.fixtures.catalog",
    "tests.fixtures.hub",
    "tests.fixtures.samples",
    "tests.fixtures.runtimes",
    "tests.fixtures.azurite",
    "tests.fixtures.docker",
    "tests.fixtures.registry_auth",
    "tests.fixtures.publishing",
    "tests.fixtures.browser",
    "tests.fixtures.ground_truth",
]
