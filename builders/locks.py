"""Lock files: the exact, hash-pinned wheel set of each runtime image built here.

Each buildable recipe lists its top-level requirements (`Recipe.requirements`); `make lock` (scripts/lock.py)
resolves them into `builders/recipes/locks/<runtime>.txt`, pip's hash-checking format, and the image build
installs exactly that file with `--no-index --require-hashes`. This module reads those files and, for the
weekly rebuild, proposes updates: what a fresh resolution of the same requirements would pick today.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from builders.errors import RecipeError

LOCK_DIR = Path(__file__).resolve().parent / "recipes" / "locks"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)", re.MULTILINE)


@dataclass(frozen=True)
class ProposedUpdate:
    """A package a fresh resolution would move: from the locked version to the one available now."""

    package: str
    locked: str | None
    available: str | None

    @property
    def change(self) -> str:
        if self.locked is None:
            return f"add {self.package}=={self.available}"
        if self.available is None:
            return f"drop {self.package}=={self.locked}"
        return f"{self.package} {self.locked} -> {self.available}"


def normalize(name: str) -> str:
    """PEP 503 name normalisation (`Foo_Bar` and `foo-bar` are the same project)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_pip_env() -> dict[str, str]:
    """The environment for pip runs over a complete, hash-pinned lock: host-wide constraints are dropped.

    A machine may cap packages for its own environments (here /etc/xdg/pip caps torch and torchvision at the
    builds on its disk); the lock already pins every wheel of an image by hash, and a cap would only refuse it.
    """
    return {**os.environ, "PIP_CONSTRAINT": os.devnull}


def lock_path(runtime: str) -> Path:
    return LOCK_DIR / f"{runtime}.txt"


def build_lock_name(runtime: str) -> str:
    """The lock of a runtime's source-build requirements (`locks/<runtime>-build.txt`)."""
    return f"{runtime}-build"


def requirement_block(lock_text: str, package: str) -> str:
    """The lock's entry for one package (its `name==version` line with every `--hash`), or "" when absent."""
    for block in re.split(r"\n(?=\S)", lock_text):
        match = _PIN.match(block)
        if match and normalize(match.group(1)) == normalize(package):
            return block.strip() + "\n"
    return ""


def with_wheel_hash(lock_text: str, package: str, sha256: str) -> str:
    """The lock with `package` pinned to one wheel's sha256 instead of its sdist's (a wheel compiled here)."""
    block = requirement_block(lock_text, package)
    if not block:
        raise RecipeError(f"{package} is not in the lock; run `make lock`")
    pin = block.split("\\", 1)[0].strip()
    return lock_text.replace(block.rstrip("\n"), f"{pin} \\\n    --hash=sha256:{sha256}")


def read_lock(runtime: str) -> str:
    """The lock text of a buildable runtime, or "" when it was never generated (the build then refuses)."""
    path = lock_path(runtime)
    return path.read_text(encoding="utf-8") if path.is_file() else ""


def require_lock(runtime: str, lock_text: str) -> str:
    """The lock text, or a clear error that says how to make it."""
    if not pins(lock_text):
        raise RecipeError(
            f"runtime {runtime} has no lock file {lock_path(runtime)}; run `make lock` and commit the result"
        )
    return lock_text


def pins(lock_text: str) -> dict[str, str]:
    """normalized package name -> pinned version, from a requirements/lock text."""
    return {normalize(name): version for name, version in _PIN.findall(lock_text)}


def proposed_updates(
    requirements: Sequence[str],
    lock_text: str,
    *,
    index_args: Iterable[str] = (),
    timeout_s: float = 600.0,
) -> list[ProposedUpdate]:
    """What pip would resolve for `requirements` today, compared with the lock (empty: the lock is current).

    Runs `pip install --dry-run --ignore-installed --report` with the host's pip (nothing is installed);
    `index_args` are extra pip arguments such as `--index-url` or `--no-index --find-links DIR`.
    """
    with tempfile.TemporaryDirectory(prefix="lock-update-") as tmp:
        report_path = Path(tmp) / "report.json"
        command = [
            sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
            "--only-binary", ":all:", "--disable-pip-version-check", "--report", str(report_path),
            *index_args, *requirements,
        ]  # fmt: skip
        try:
            result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise RecipeError(f"resolving {', '.join(requirements)} took over {timeout_s:.0f} s") from exc
        if result.returncode != 0:
            raise RecipeError(
                f"cannot resolve {', '.join(requirements)} now (pip exit {result.returncode}): "
                f"{result.stderr.strip()[-500:]}"
            )
        report = json.loads(report_path.read_text(encoding="utf-8"))
    fresh = {
        normalize(item["metadata"]["name"]): str(item["metadata"]["version"]) for item in report.get("install", [])
    }
    locked = pins(lock_text)
    updates = [
        ProposedUpdate(name, locked.get(name), fresh.get(name))
        for name in sorted(set(locked) | set(fresh))
        if locked.get(name) != fresh.get(name) and not _same_local_build(locked.get(name), fresh.get(name))
    ]
    return updates


def _same_local_build(locked: str | None, fresh: str | None) -> bool:
    """`2.13.0+cpu` locked and `2.13.0` resolved are the same release (a local build label only)."""
    return locked is not None and fresh is not None and locked.split("+", 1)[0] == fresh.split("+", 1)[0]
