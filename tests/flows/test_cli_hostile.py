"""Every `curate` command, driven by Hypothesis with hostile arguments and a hostile environment.

The commands are enumerated from the typer app, so a new command is covered without touching this file. Every
endpoint is an unreachable loopback port (or something that is not a URL at all): nothing here may reach a real
service. For each run: the exit code is one of the documented ones (never 70, a bug), stderr holds at most a few
lines and no traceback unless `--debug`, and nothing is written outside the data directory, PREFECT_HOME and the
system temporary directory (the working directory and HOME stay empty).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.main import get_command
from typer.testing import CliRunner

from flows.cli.app import app
from flows.cli.exit_codes import ExitCode
from registry.net import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
DEAD = f"http://127.0.0.1:{free_port()}"  # nothing listens there (a port that was free a moment ago)
DOCUMENTED = {int(code) for code in ExitCode if code not in (ExitCode.INTERNAL, ExitCode.INTERRUPTED)}
MAX_STDERR_LINES = 3
EXAMPLES_PER_COMMAND = 40

HOSTILE = [
    "../../etc/passwd", "/etc/passwd", "..", ".", "", " ", "a/b/c", "org/", "/name", "org/..", "org--x/y",
    "Org/Name\n", "\x1b[31mred", "[bold]x[/]", "\uff4f\uff52\uff47/\uff4d", "org/\u202eledom", "\U0001f600/x",
    "x" * 5000, "a/" + "b" * 20000, "9" * 400, "-1", "0", "nan", "inf", "1e999", "main", "0" * 40,
    "http://127.0.0.1:1/v1", DEAD + "/v1", "file:///etc/passwd", "http://[::1", "//x", "~", "*", "$(id)",
    "%s%n", "/dev/zero", "/proc/self/mem", sys.executable, "org/name@" + "0" * 40, "localhost:1/x:y",
]  # fmt: skip
OUTPUT_PATHS = ["../escape", "out", "/nonexistent/dir/x", "", ".", "a/../../b", "x" * 300]
# Options whose value is a place to write: only places inside the scratch directory, or none at all.
OUTPUT_OPTIONS = {"--out", "--markdown"}
# Options and commands that would start real work without a hostile value: always given one.
MUST = {("dev", "up"): "--only"}
NOT_FUZZED = {"--help", "--install-completion", "--show-completion", "--data-dir"}

_text = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=40)
hostile = st.one_of(st.sampled_from(HOSTILE), _text)


def _commands() -> list[tuple[tuple[str, ...], Any]]:
    def walk(group: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
        for name, command in sorted(group.commands.items()):
            if hasattr(command, "commands"):
                yield from walk(command, (*path, name))
            else:
                yield (*path, name), command

    return list(walk(get_command(app), ()))


COMMANDS = _commands()


def _option_args(command_path: tuple[str, ...], params: list[Any]) -> st.SearchStrategy[list[str]]:
    options = [p for p in params if p.param_type_name == "option" and not NOT_FUZZED & set(p.opts)]
    must = MUST.get(command_path)

    def one(option: Any) -> st.SearchStrategy[list[str]]:
        name = option.opts[0]
        if option.is_flag:
            return st.just([name])
        values = st.sampled_from(OUTPUT_PATHS) if name in OUTPUT_OPTIONS else hostile
        if name == must:
            values = st.sampled_from(HOSTILE)
        count = st.integers(1, 2) if option.multiple else st.just(1)
        pairs = count.flatmap(lambda n: st.lists(values, min_size=n, max_size=n))
        return pairs.map(lambda vs: [x for v in vs for x in (name, v)])

    chosen = st.lists(st.sampled_from(options), unique_by=lambda o: o.opts[0], max_size=4) if options else st.just([])
    required = [o for o in options if o.opts[0] == must]

    def build(picked: list[Any]) -> st.SearchStrategy[list[str]]:
        picked = required + [o for o in picked if o not in required]
        return st.tuples(*(one(o) for o in picked)).map(lambda parts: [x for part in parts for x in part])

    return chosen.flatmap(build)


def _invocation(command_path: tuple[str, ...], command: Any) -> st.SearchStrategy[tuple[list[str], dict[str, Any]]]:
    arguments = [p for p in command.params if p.param_type_name == "argument"]
    positional = st.lists(hostile, min_size=len(arguments), max_size=len(arguments))
    global_options = st.lists(
        st.one_of(
            st.tuples(st.just("--endpoint"), st.sampled_from([DEAD, "http://127.0.0.1:1", *HOSTILE[:12]])),
            st.tuples(st.just("--config"), hostile),
            st.tuples(st.just("--debug")),
        ),
        max_size=2,
    ).map(lambda items: [x for item in items for x in item])
    environment = st.fixed_dictionaries(
        {},
        optional={
            "HF_ENDPOINT": st.sampled_from([DEAD, "http://127.0.0.1:1/", "not a url", "ftp://127.0.0.1:1"]),
            "HF_TOKEN": hostile,
            "DOCKER_HOST": st.sampled_from([f"tcp://127.0.0.1:{free_port()}", "unix:///nonexistent.sock", "x"]),
            "CURATE_HUB__TIMEOUT_S": st.sampled_from(["-1", "0", "1e999", "x", "0.5"]),
            "CURATE_HUB__DEADLINE_S": st.sampled_from(["-1", "1e999", "2"]),
            "CURATE_DISCOVERY__LIMIT": st.sampled_from(["0", "99999999999", "-5", "2"]),
        },
    )
    return st.tuples(global_options, positional, _option_args(command_path, command.params), environment).map(
        lambda t: ([*t[0], *command_path, *t[1], *t[2]], t[3])
    )


@pytest.fixture(scope="module")
def dead_prefect_api() -> Iterator[str]:
    """Whatever Prefect API another test left configured in this process, the CLI sees an unreachable one."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: f"{DEAD}/api"}):
        yield f"{DEAD}/api"


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


@pytest.mark.parametrize(("command_path", "command"), COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_hostile_input_gets_one_line_and_a_documented_exit_code(
    command_path: tuple[str, ...], command: Any, dead_prefect_api: str
) -> None:
    runner = CliRunner()

    @settings(
        max_examples=EXAMPLES_PER_COMMAND,
        deadline=timedelta(seconds=30),  # a hang guard (retry storms), not a measurement
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        database=None,
    )
    @given(_invocation(command_path, command))
    def run(invocation: tuple[list[str], dict[str, Any]]) -> None:
        args, environment = invocation
        with tempfile.TemporaryDirectory(prefix="hostile-") as scratch:
            root = Path(scratch)
            cwd, home, data, prefect_home = (root / name for name in ("cwd", "home", "data", "prefect"))
            for directory in (cwd, home, prefect_home):
                directory.mkdir()
            env = {
                "HF_ENDPOINT": DEAD,
                "DOCKER_HOST": f"tcp://127.0.0.1:{free_port()}",
                "PREFECT_API_URL": dead_prefect_api,
                "HOME": str(home),
                "PREFECT_HOME": str(prefect_home),
                "CURATE_CONFIG": str(REPO_ROOT / "curation.toml"),
                "CURATE_DATA_DIR": str(data),
                **environment,
            }
            previous = Path.cwd()
            os.chdir(cwd)
            try:
                result = runner.invoke(app, ["--data-dir", str(data), *args], env=env)
            finally:
                os.chdir(previous)
            shown = f"curate {' '.join(map(repr, args))} with {environment}:\n{result.output[-3000:]}"
            assert result.exit_code in DOCUMENTED, shown
            if "--debug" not in args:
                assert len(result.stderr.strip().splitlines()) <= MAX_STDERR_LINES, shown
                assert "Traceback" not in result.output, shown
            assert _files(cwd) == set() and _files(home) == set(), shown
            assert {p.name for p in root.iterdir()} <= {"cwd", "home", "data", "prefect"}, shown

    run()
