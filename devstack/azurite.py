"""Azurite (the Azure Blob emulator) with one storage account per region, on 127.0.0.1.

Each region of the catalog is a separate storage account (`AZURITE_ACCOUNTS="eastus:<key>;westeurope:<key>"`),
served at `http://127.0.0.1:<port>/<account>`. The keys are well-known development keys derived from the
account name (deterministic, so a restarted emulator accepts the connection strings handed out before); they
protect nothing and must never be used outside the local stack. `curate dev up` and the test fixtures start
it; both stop it by pid (`stop_azurite`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from devstack.net import LOOPBACK, free_port, port_open
from devstack.process import ProcessError, pid_alive, read_pid_file, start_process, stop_pid
from devstack.state import ServiceState

AZURITE_BIN = Path(__file__).resolve().parent.parent / ".cache" / "node" / "node_modules" / ".bin" / "azurite-blob"
_ACCOUNT = re.compile(r"^[a-z0-9]{3,24}$")
AZURITE_PORT = 10000
_PID_FILE = "azurite.pid"
_STACK_FILE = "azurite.json"


class AzuriteError(ProcessError):
    """Azurite could not be started or used; the message says why and where its log is."""


def dev_account_key(account: str) -> str:
    """The well-known local development key of `account` (base64 of 64 bytes derived from its name)."""
    digest = hashlib.sha512(f"curation-azurite-dev-key:{account}".encode()).digest()
    return base64.b64encode(digest).decode()


def connection_string(account: str, key: str, port: int, host: str = LOOPBACK) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={account};AccountKey={key};"
        f"BlobEndpoint=http://{host}:{port}/{account};"
    )


@dataclass(frozen=True)
class AzuriteStack:
    """A running Azurite: its pid, port, and per region the account and its connection string."""

    pid: int
    port: int
    location: Path
    log_path: Path
    accounts: dict[str, str] = field(default_factory=dict)
    connection_strings: dict[str, str] = field(default_factory=dict)

    @property
    def blob_endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def alive(self) -> bool:
        return pid_alive(self.pid)

    def storage_overrides(self) -> dict[str, object]:
        """`load_settings(storage=...)` overrides pointing every region at this emulator."""
        return {
            "regions": {
                region: {"account": self.accounts[region], "connection_string": conn}
                for region, conn in self.connection_strings.items()
            }
        }

    def env(self) -> dict[str, str]:
        """CURATE_STORAGE__REGIONS__<REGION>__* variables for a client process (contains dev keys only)."""
        out: dict[str, str] = {}
        for region, conn in self.connection_strings.items():
            prefix = f"CURATE_STORAGE__REGIONS__{region.upper()}__"
            out[prefix + "ACCOUNT"] = self.accounts[region]
            out[prefix + "CONNECTION_STRING"] = conn
        return out

    def stop(self) -> None:
        stop_pid(self.pid)


def _normalise(regions: Mapping[str, str] | Sequence[str]) -> dict[str, str]:
    accounts = dict(regions) if isinstance(regions, Mapping) else {r: r for r in regions}
    if not accounts:
        raise AzuriteError("no regions to start Azurite for; configure [storage.regions] in curation.toml")
    for region, account in accounts.items():
        if not _ACCOUNT.match(account):
            raise AzuriteError(
                f"region {region!r}: storage account name {account!r} must be 3-24 lowercase letters/digits"
            )
    return accounts


def start_azurite(
    state_dir: Path,
    regions: Mapping[str, str] | Sequence[str],
    port: int | None = None,
    *,
    timeout: float = 60.0,
) -> AzuriteStack:
    """Start Azurite serving one account per region (region -> account name, or region names as accounts).

    Data lives under `state_dir/azurite`; the pid file and a stack description under `state_dir`. An Azurite
    already started from this state_dir is stopped first.
    """
    accounts = _normalise(regions)
    if not AZURITE_BIN.is_file():
        raise AzuriteError(f"{AZURITE_BIN} is missing; run scripts/install-system.sh (npm install azurite)")
    state_dir = Path(state_dir)
    stop_azurite(state_dir)
    location = state_dir / "azurite"
    location.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    keys = {region: dev_account_key(account) for region, account in accounts.items()}
    env = {
        "AZURITE_ACCOUNTS": ";".join(f"{accounts[r]}:{keys[r]}" for r in accounts),
    }
    log_path = state_dir / "azurite.log"
    process = start_process(
        "azurite",
        [
            str(AZURITE_BIN),
            "--blobHost",
            LOOPBACK,
            "--blobPort",
            str(port),
            "--location",
            str(location),
            "--disableTelemetry",
            "--skipApiVersionCheck",
            "--loose",
        ],
        log_path=log_path,
        pid_path=state_dir / _PID_FILE,
        env=env,
    )
    deadline = time.monotonic() + timeout
    while not port_open(port):
        if not process.alive():
            raise AzuriteError(f"Azurite exited at start; see {log_path}:\n{process.log_tail()}")
        if time.monotonic() > deadline:
            process.stop()
            raise AzuriteError(f"Azurite did not listen on {LOOPBACK}:{port} within {timeout:.0f}s; see {log_path}")
        time.sleep(0.1)
    stack = AzuriteStack(
        pid=process.pid,
        port=port,
        location=location,
        log_path=log_path,
        accounts=accounts,
        connection_strings={r: connection_string(accounts[r], keys[r], port) for r in accounts},
    )
    description = {"pid": stack.pid, "port": port, "accounts": accounts}
    (state_dir / _STACK_FILE).write_text(json.dumps(description, indent=2))
    return stack


def running_azurite(state_dir: Path) -> AzuriteStack | None:
    """The Azurite started from `state_dir`, if it is still running."""
    state_dir = Path(state_dir)
    pid = read_pid_file(state_dir / _PID_FILE)
    if pid is None:
        return None
    try:
        description = json.loads((state_dir / _STACK_FILE).read_text())
    except (OSError, ValueError):
        return None
    accounts = {str(k): str(v) for k, v in description.get("accounts", {}).items()}
    port = int(description["port"])
    return AzuriteStack(
        pid=pid,
        port=port,
        location=state_dir / "azurite",
        log_path=state_dir / "azurite.log",
        accounts=accounts,
        connection_strings={r: connection_string(a, dev_account_key(a), port) for r, a in accounts.items()},
    )


def stop_azurite(state_dir: Path) -> bool:
    """Stop the Azurite started from `state_dir` (by its pid file). Returns whether one was running."""
    state_dir = Path(state_dir)
    pid_path = state_dir / _PID_FILE
    pid = read_pid_file(pid_path)
    pid_path.unlink(missing_ok=True)
    if pid is None:
        return False
    stop_pid(pid)
    return True


def azurite_service(
    root: Path,
    regions: Mapping[str, str] | Sequence[str],
    progress: Callable[[str], None] = lambda message: None,
) -> ServiceState:
    """`curate dev up`'s Azurite: one account per configured region, on 127.0.0.1:10000 (or a free port).

    The returned service's env holds CURATE_STORAGE__REGIONS__<REGION>__ACCOUNT / __CONNECTION_STRING (local
    development keys only), which the CLI exports for every later command.
    """
    port = AZURITE_PORT if not port_open(AZURITE_PORT) else free_port()
    progress(f"starting Azurite on 127.0.0.1:{port} (accounts: {', '.join(_normalise(regions).values())})")
    stack = start_azurite(Path(root) / "azurite", regions, port)
    return ServiceState(
        name="azurite",
        pids=(stack.pid,),
        url=stack.blob_endpoint,
        env=stack.env(),
        details={"accounts": stack.accounts, "location": str(stack.location), "log": str(stack.log_path)},
    )


__all__ = [
    "AZURITE_BIN",
    "AzuriteError",
    "AzuriteStack",
    "azurite_service",
    "connection_string",
    "dev_account_key",
    "running_azurite",
    "start_azurite",
    "stop_azurite",
]
