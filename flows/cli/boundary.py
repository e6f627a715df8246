"""The CLI's one error boundary: whatever a `curate` command runs into ends in one line on stderr and an exit code
of `flows/cli/exit_codes.py`.

`CurateGroup` is the root command's class, so the boundary holds for `curate` and for `typer.testing.CliRunner`
alike. Expected failures (usage errors, the packages' typed errors, a command's `CliError`) print `error: <what
failed and what to do>`; `--debug` adds the traceback. Anything else is a bug: one line naming the file under
`<data dir>/logs/` the full trace was written to. SIGTERM and SIGHUP become an exception (`Terminated`) so that
every `finally` runs (temporary servers stop, clients close); a second signal exits at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import typer
from typer.core import TyperGroup

from flows.cli.exit_codes import ExitCode, classify, signal_exit_code
from flows.cli.output import err_console

MAX_LINE = 1000
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Terminated(BaseException):
    """A signal (SIGTERM, SIGHUP) asked the command to stop; a BaseException so no `except Exception` keeps it."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


@contextlib.contextmanager
def signals_stop_the_command() -> Iterator[None]:
    """SIGTERM / SIGHUP raise `Terminated` in the main thread (the previous handlers come back afterwards)."""
    received: list[int] = []

    def stop(signum: int, _frame: FrameType | None) -> None:
        if received:  # a second signal while the first one is being handled: stop now
            os._exit(signal_exit_code(signum))
        received.append(signum)
        raise Terminated(signum)

    previous: dict[signal.Signals, Any] = {}
    for which in _STOP_SIGNALS:
        with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
            previous[which] = signal.signal(which, stop)
    try:
        yield
    finally:
        for which, handler in previous.items():
            signal.signal(which, handler)


def one_line(text: str) -> str:
    """The first line of a message, bounded, control characters escaped; the rest is for --debug."""
    lines = text.strip().splitlines() or [""]
    line = "".join(c if c.isprintable() else repr(c)[1:-1] for c in lines[0])
    line += " (more with --debug)" if len(lines) > 1 else ""
    return line if len(line) <= MAX_LINE else line[: MAX_LINE - 3] + "..."


def report(message: str) -> None:
    """`error: <message>` on stderr, on one line whatever the terminal's width (the message is not markup)."""
    err_console.print("[bold red]error:[/] ", end="", soft_wrap=True)
    err_console.print(message, markup=False, highlight=False, soft_wrap=True)


def _trace_file(error: BaseException) -> Path | None:
    from flows.cli.context import settings

    text = "".join(traceback.format_exception(error))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    candidates: list[Callable[[], Path]] = [lambda: settings().data_dir / "logs", lambda: Path(tempfile.gettempdir())]
    for directory in candidates:
        with contextlib.suppress(Exception):
            folder = directory()
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"curate-{stamp}-{os.getpid()}.trace"
            path.write_text(text, encoding="utf-8")
            return path
    return None


def _usage(error: typer.TyperException) -> int:
    """typer's (vendored click's) parsing errors: a usage error is exit 2, as click has it."""
    if type(error).__name__ == "NoArgsIsHelpError":  # the help was printed already
        return ExitCode.USAGE
    ctx = getattr(error, "ctx", None)
    where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
    report(one_line(error.format_message()) + where)
    return ExitCode.USAGE


def _failure(error: BaseException, debug: bool) -> int:
    code = classify(error)
    if debug:
        traceback.print_exception(error, file=sys.stderr)
    if code is ExitCode.INTERNAL:
        where = _trace_file(error)
        saved = f"the full trace is in {where}" if where else "run again with --debug for the trace"
        report(one_line(f"internal error ({type(error).__name__}: {error}); {saved}; please report it"))
    else:
        report(one_line(str(error)) or type(error).__name__)
    return code


def run_guarded(call: Callable[[], Any], debug: Callable[[], bool]) -> int:
    """Run the command line; return its exit code, having printed one line for any failure."""
    try:
        result = call()
    except typer.TyperException as exc:  # usage errors, and options whose file cannot be opened
        return _usage(exc)
    except typer.Abort:
        report("interrupted")
        return ExitCode.INTERRUPTED
    except KeyboardInterrupt:
        report("interrupted (Ctrl-C)")
        return ExitCode.INTERRUPTED
    except Terminated as exc:
        report(str(exc))
        return signal_exit_code(exc.signum)
    except SystemExit as exc:
        return ExitCode.OK if exc.code is None else exc.code if isinstance(exc.code, int) else ExitCode.FAILED
    except Exception as exc:  # noqa: BLE001 - the boundary: classified, reported in one line, traced under --debug
        return _failure(exc, debug())
    if result == ExitCode.INTERRUPTED:
        report("interrupted (Ctrl-C)")
    return result if isinstance(result, int) else ExitCode.OK


class CurateGroup(TyperGroup):
    """The root `curate` group: the error boundary and the signal handling around every command."""

    def main(
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        from flows.cli.context import STATE

        def invoke() -> Any:
            return super(CurateGroup, self).main(
                args=args,
                prog_name=prog_name,
                complete_var=complete_var,
                standalone_mode=False,
                windows_expand_args=windows_expand_args,
                **extra,
            )

        with signals_stop_the_command():
            code = run_guarded(invoke, lambda: STATE.debug)
        if standalone_mode:
            sys.exit(code)
        return code
