"""A temporary Prefect API server for one `curate` command, when no PREFECT_API_URL is configured.

Prefect would start one by itself (its "ephemeral" server), but as an ordinary child process: a terminal's Ctrl-C
or `timeout`'s SIGTERM reaches the whole process group, the server dies first, and the flow engine then spends
minutes retrying to report the crash to it (and to flush its logs); a SIGTERM to curate alone makes the engine
re-raise the signal after its crash report, which kills curate before `atexit` stops the server, leaving it
running. This one runs in a session of its own (group signals reach only curate, whose flow engine can still
report), dies with curate whatever kills it (Linux `PR_SET_PDEATHSIG`, set by flows/prefect_server_process.py,
the server process itself), and is drained and stopped by `stop()`.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from flows.cli.exit_codes import CliError, ExitCode
from registry.net import LOOPBACK, free_port

_STOP_TIMEOUT_S = 5.0


class TemporaryPrefectServer:
    """Prefect's API on 127.0.0.1 for the life of one command (see the module's docstring)."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def api_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/api"

    def start(self, timeout_s: float) -> None:
        from prefect.settings import get_current_settings

        env = {**os.environ, **get_current_settings().to_environment_variables(exclude_unset=True)}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "flows.prefect_server_process", str(os.getpid()), str(self.port)],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self._wait_healthy(timeout_s)

    def _wait_healthy(self, timeout_s: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise CliError(
                        f"the temporary Prefect server exited ({self.process.returncode}); its log is {self.log_path}",
                        ExitCode.INTERNAL,
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{self.api_url}/health").status_code == 200:
                        return
                time.sleep(0.1)
        raise CliError(
            f"the temporary Prefect server did not start within {timeout_s:.0f} s (log: {self.log_path}); "
            "start one with `curate dev up` and retry",
            ExitCode.UNREACHABLE,
        )

    def stop(self) -> None:
        """Flush the logs and events still on their way to the API, then stop the server (SIGKILL if it lingers)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            _drain_prefect_workers()
        self.process.terminate()
        try:
            self.process.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


def _drain_prefect_workers() -> None:
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(RuntimeError):
            worker.drain_all(timeout=_STOP_TIMEOUT_S)
