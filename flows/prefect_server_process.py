"""The temporary Prefect API server of one `curate` command, as a process: `python -m flows.prefect_server_process
PARENT_PID PORT` (started by flows/cli/prefect_server.py, which explains why curate runs its own).

It asks the kernel to SIGTERM it when its parent dies (Linux `PR_SET_PDEATHSIG`), so that no server outlives the
command however the command ends, then serves Prefect's API app on 127.0.0.1:PORT. Kept out of `flows.cli`, whose
package import loads every command.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def serve(parent: int, port: int) -> None:
    with contextlib.suppress(AttributeError, OSError):  # Linux only: elsewhere a SIGKILLed parent leaves it running
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the line above
        return
    import uvicorn
    from prefect.server.api.server import create_app

    uvicorn.run(create_app(ephemeral=True, final=True), host="127.0.0.1", port=port, log_level="error", lifespan="on")


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]))
