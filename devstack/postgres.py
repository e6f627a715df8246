"""A private PostgreSQL cluster on 127.0.0.1 from the machine's server binaries, started and stopped by pid.

For the tests (the catalog store on PostgreSQL) and the scale benchmark (Prefect's database and the catalog):
`initdb` into a directory of its own (as `nobody` when running as root: initdb refuses root), trust auth on
loopback only, `fsync=off` (throwaway data).

    cluster = start_postgres(Path("/tmp/pg"))
    cluster.create_database("catalog")  ->  cluster.url("catalog")   (postgresql+psycopg://postgres@...)
    cluster.stop()
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from devstack.net import free_port
from devstack.process import ManagedProcess, ProcessError, pid_alive, start_process


class PostgresUnavailableError(ProcessError):
    """PostgreSQL cannot be started here (no server binaries, no psycopg, or root without a user to run it as)."""


@dataclass(frozen=True)
class PostgresCluster:
    base: Path
    port: int
    process: ManagedProcess

    def url(self, database: str, driver: str = "psycopg") -> str:
        """SQLAlchemy URL of `database` (superuser `postgres`); driver `asyncpg` for Prefect's server."""
        return f"postgresql+{driver}://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as c:
            c.execute(f'CREATE DATABASE "{name}"')  # names come from the caller's code, never from input
        return self.url(name)

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        """Fast shutdown of the postmaster by its pid (postmaster.pid, line 1), then the wrapper by its pid."""
        with contextlib.suppress(OSError, ValueError, IndexError):
            postmaster = int((self.base / "data" / "postmaster.pid").read_text().splitlines()[0])
            os.kill(postmaster, signal.SIGINT)
            deadline = time.monotonic() + 20
            while pid_alive(postmaster) and time.monotonic() < deadline:
                time.sleep(0.1)
        self.process.stop()
        shutil.rmtree(self.base, ignore_errors=True)


def postgres_bindir() -> Path | None:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: p.parent.parent.name)
    for initdb in reversed(candidates):
        if (initdb.parent / "postgres").exists():
            return initdb.parent
    found = shutil.which("initdb")
    return Path(found).parent if found and shutil.which("postgres") else None


def _as_user() -> tuple[list[str], int | None]:
    """The command prefix that runs the server as a non-root user (nobody) when we are root."""
    if os.geteuid() != 0:
        return [], None
    runuser = shutil.which("runuser")
    try:
        owner = pwd.getpwnam("nobody").pw_uid
    except KeyError:
        owner = None
    if runuser is None or owner is None:
        raise PostgresUnavailableError("running as root without runuser/nobody: cannot start PostgreSQL as non-root")
    return [runuser, "-u", "nobody", "--"], owner


def _wait_ready(port: int, proc: ManagedProcess, timeout: float) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres", connect_timeout=2):
                return
        except psycopg.OperationalError as exc:
            if not proc.alive() or time.monotonic() > deadline:
                raise ProcessError(f"PostgreSQL did not start on 127.0.0.1:{port}: {proc.log_tail()}") from exc
            time.sleep(0.2)


def start_postgres(base: Path, *, max_connections: int = 100, timeout: float = 60.0) -> PostgresCluster:
    """initdb a cluster under `base` (created, must not hold one yet) and start it on a free port. As root the
    server runs as `nobody`, so `base` must be reachable by it: a fresh `tempfile.mkdtemp()` is (not a directory
    inside another private one)."""
    try:
        import psycopg  # noqa: F401
    except ImportError as exc:
        raise PostgresUnavailableError("psycopg is not installed: pip install -e '.[postgres]'") from exc
    bindir = postgres_bindir()
    if bindir is None:
        raise PostgresUnavailableError("PostgreSQL server binaries (initdb, postgres) not found")
    prefix, owner = _as_user()
    base.mkdir(parents=True, exist_ok=True)
    if owner is not None:
        os.chown(base, owner, -1)
    data = base / "data"
    argv = [*prefix, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "-N"]
    init = subprocess.run(argv, capture_output=True, text=True, check=False)
    if init.returncode != 0:
        raise ProcessError(f"initdb failed ({init.returncode}): {init.stderr or init.stdout}")
    port = free_port()
    server = [*prefix, str(bindir / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port), "-k", str(base)]
    options = ["-c", "fsync=off", "-c", f"max_connections={max_connections}"]
    proc = start_process("postgres", [*server, *options], log_path=base / "postgres.log")
    try:
        _wait_ready(port, proc, timeout)
    except ProcessError:
        proc.stop()
        raise
    return PostgresCluster(base=base, port=port, process=proc)
