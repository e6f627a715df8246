"""The `curate` exit codes, defined once, and which class of failure each error of the packages belongs to.

docs/cli.md lists the same codes; `tests/flows/test_cli_exit_codes.py` checks the two agree. An error is classified
by the first row of `_CLASSES` it matches, looking at the error and then at what caused it (`raise ... from`):
`ScreeningError` from a `RepoNotFoundError` is "not found", an `OciError` from a refused connection "unreachable".
An error of the packages' hierarchies that no row names more precisely is `FAILED`; anything else is a bug
(`INTERNAL`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1
    """The work ran and did not pass: a check, gate or verification failed, or a step failed (the line says which)."""
    USAGE = 2
    """Bad arguments, a malformed id or revision, an unusable policy file."""
    NOT_FOUND = 3
    """No such repository, revision, file, entry, run, image or tool."""
    UNREACHABLE = 4
    """A service did not answer: Hub, Prefect API, storage, image registry, Docker Engine, an OpenAI endpoint."""
    REFUSED = 5
    """A service answered but refused the credentials (or their absence): HF_TOKEN, storage keys, registry login."""
    INCOMPATIBLE = 6
    """A service answered, but not as the API it should be (not a Hub, not an OpenAI-compatible server)."""
    INTERNAL = 70
    """A bug: one line on stderr and the full trace in a file under <data dir>/logs/."""
    INTERRUPTED = 130
    """Ctrl-C (SIGINT). Other signals exit with 128 + the signal number: 143 for SIGTERM, 129 for SIGHUP."""


def signal_exit_code(signum: int) -> int:
    return 128 + signum


class CliError(Exception):
    """An expected failure the CLI reports in one line with its exit code (raised by the commands themselves)."""

    def __init__(self, message: str, code: ExitCode = ExitCode.FAILED) -> None:
        super().__init__(message)
        self.code = code


@functools.cache
def _classes() -> tuple[tuple[tuple[type[BaseException], ...], ExitCode], ...]:
    """Most specific first: the first row an error matches decides its class (imported on the first failure,
    so that a command that succeeds does not pay for every package's errors)."""
    import httpx
    import httpx2
    import typer

    from builders.errors import BuildersError, NotBuildableError, RecipeError
    from decisions.errors import DecisionError
    from registry.blob_errors import StorageAuthError, StorageConfigError, StorageUnavailableError
    from registry.credentials import RegistryAuthError
    from registry.errors import (
        CatalogNotFoundError,
        EntryNotFoundError,
        GatedRepoError,
        HubAuthError,
        HubRateLimitedError,
        HubResponseError,
        HubUnavailableError,
        RegistryError,
        RepoNotFoundError,
        RevisionNotFoundError,
    )
    from registry.identifiers import InvalidIdentifierError
    from registry.oci import OciNotFoundError
    from registry.settings import SettingsError
    from registry.tools import ToolNotFoundError
    from scanners.errors import ScannerError
    from validators.errors import (
        BenchmarkError,
        ConformanceError,
        EndpointUnreachableError,
        NotOpenAIEndpointError,
        ValidatorError,
    )

    return (
        ((typer.TyperException, InvalidIdentifierError, SettingsError), ExitCode.USAGE),
        ((ConformanceError, BenchmarkError, RecipeError, NotBuildableError), ExitCode.USAGE),
        ((StorageAuthError, HubAuthError, GatedRepoError, RegistryAuthError, PermissionError), ExitCode.REFUSED),
        ((StorageConfigError,), ExitCode.USAGE),
        (
            (RepoNotFoundError, RevisionNotFoundError, EntryNotFoundError, OciNotFoundError, CatalogNotFoundError),
            ExitCode.NOT_FOUND,
        ),
        ((ToolNotFoundError, FileNotFoundError), ExitCode.NOT_FOUND),
        ((HubResponseError, NotOpenAIEndpointError), ExitCode.INCOMPATIBLE),
        (
            (HubUnavailableError, HubRateLimitedError, StorageUnavailableError, EndpointUnreachableError),
            ExitCode.UNREACHABLE,
        ),
        ((ConnectionError, TimeoutError, httpx.TransportError, httpx2.TransportError), ExitCode.UNREACHABLE),
        ((RegistryError, ScannerError, ValidatorError, BuildersError, DecisionError, OSError), ExitCode.FAILED),
    )


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _row(error: BaseException) -> ExitCode | None:
    if isinstance(error, CliError):
        return error.code
    return next((code for types, code in _classes() if isinstance(error, types)), None)


def classify(error: BaseException) -> ExitCode:
    """The exit code of an error: the most precise class along its cause chain when the error itself is one the
    packages raise (or a network error), else INTERNAL (a bug, whatever caused it)."""
    codes = [_row(e) for e in _chain(error)]
    if codes[0] is None:
        return ExitCode.INTERNAL
    return next((c for c in codes if c not in (None, ExitCode.FAILED)), codes[0])
