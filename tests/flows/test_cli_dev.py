"""Every `curate` command uses a running local stack's environment, and says so in one line on stderr."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from devstack.state import ServiceState, StackState, save_state
from flows.cli import app

VARIABLE = "CURATE_TEST_LOCAL_STACK_URL"


@pytest.fixture
def running_stack(tmp_path: Path) -> Iterator[Path]:
    """A state file naming this test process as a running service with one client variable."""
    os.environ.pop(VARIABLE, None)
    service = ServiceState(name="hub", pids=(os.getpid(),), env={VARIABLE: "http://127.0.0.1:9"})
    save_state(tmp_path, StackState(services={"hub": service}))
    try:
        yield tmp_path
    finally:
        os.environ.pop(VARIABLE, None)


def test_the_stack_environment_is_announced_once(running_stack: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["--data-dir", str(running_stack), "catalog", "list", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == []
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and VARIABLE in lines[0] and "curate dev up" in lines[0]
    assert os.environ[VARIABLE] == "http://127.0.0.1:9"
    again = runner.invoke(app, ["--data-dir", str(running_stack), "catalog", "list", "--json"])
    assert again.exit_code == 0 and again.stderr == ""  # already in the environment: nothing to say


def test_an_explicit_variable_wins_and_dev_commands_stay_quiet(running_stack: Path) -> None:
    os.environ[VARIABLE] = "http://elsewhere"
    runner = CliRunner()
    result = runner.invoke(app, ["--data-dir", str(running_stack), "catalog", "list", "--json"])
    assert result.exit_code == 0 and result.stderr == ""
    assert os.environ[VARIABLE] == "http://elsewhere"
    os.environ.pop(VARIABLE)
    quiet = runner.invoke(app, ["--data-dir", str(running_stack), "dev", "status", "--json"])
    assert quiet.exit_code == 0 and quiet.stderr == ""
    assert os.environ[VARIABLE] == "http://127.0.0.1:9"
