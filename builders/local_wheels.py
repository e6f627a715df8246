"""Wheels compiled here: a locked package the index has only as an sdist (llama-cpp-python), built once per host.

How the compiled wheel stays tied to the lock (reproducible by reference, not bit for bit):

1. the runtime's lock pins the package's **sdist** by sha256 (`make lock`), and `pip download --require-hashes`
   fetches exactly that file;
2. the build requirements (scikit-build-core, cmake, ninja) come from `locks/<runtime>-build.txt`, installed with
   `--require-hashes` into a throwaway venv, and the wheel is built there with `--no-build-isolation` and the
   recipe's `SourceBuild.env` (e.g. CMAKE_ARGS), SOURCE_DATE_EPOCH fixed;
3. the wheel lands in `<cache>/compiled/<package>-<version>-<key>/`, where the key is a digest of the sdist pin,
   the build lock, the build environment and the compiler version, next to `provenance.json` (those inputs plus
   the wheel's sha256 and the build time). The image installs that wheel pinned by its sha256
   (`builders.locks.with_wheel_hash`), and the image's recipe digest covers it.

A compiler build is not bit-reproducible across machines, so the wheel's hash is recorded per host rather than
committed; what is committed (the sdist hash, the build lock, the flags) decides what is compiled.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from builders.errors import ImageBuildError
from builders.locks import locked_pip_env, normalize, requirement_block
from builders.recipes.base import SourceBuild

Log = Callable[[str], None]
SOURCE_DATE_EPOCH = "1700000000"  # fixed, so timestamps baked into the build do not vary between builds
BUILD_TIMEOUT_S = 3600.0


@dataclass(frozen=True)
class CompiledWheel:
    """A wheel compiled here: where it is, its sha256, and the sdist it came from (kept for its files)."""

    wheel: Path
    sha256: str
    sdist: Path


def _quiet(_: str) -> None:
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _compiler() -> str:
    cxx = shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++")
    if cxx is None:
        raise ImageBuildError("no C++ compiler to build wheels from source: install g++ (Debian: build-essential)")
    result = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=False)
    return result.stdout.splitlines()[0] if result.stdout else cxx


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One build per key at a time across processes (worktrees share the wheel cache)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(command: list[str], what: str, *, env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, check=False, env=env, cwd=cwd, timeout=BUILD_TIMEOUT_S
        )
    except subprocess.TimeoutExpired as exc:
        raise ImageBuildError(f"{what} took over {BUILD_TIMEOUT_S:.0f} s") from exc
    if result.returncode != 0:
        raise ImageBuildError(f"{what} failed (exit {result.returncode}):\n{(result.stdout + result.stderr)[-3000:]}")


def compiled_key(build: SourceBuild, sdist_pin: str, build_lock: str) -> str:
    """The cache key of one compiled wheel: everything committed that decides what is compiled, plus the compiler."""
    payload = {"pin": sdist_pin, "build_lock": build_lock, "env": build.env, "compiler": _compiler()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def ensure_compiled_wheel(
    build: SourceBuild, lock_text: str, build_lock: str, cache_dir: Path, log: Log = _quiet
) -> CompiledWheel:
    """The wheel of `build.package` compiled from the sdist the lock pins; built on first use, then cached."""
    pin = requirement_block(lock_text, build.package)
    if not pin or "--hash=sha256:" not in pin:
        raise ImageBuildError(f"{build.package} is not pinned by hash in the lock; run `make lock`")
    if not build_lock.strip():
        raise ImageBuildError(f"no build lock for {build.package}; run `make lock` and commit the result")
    version = pin.split("==", 1)[1].split()[0]
    target = cache_dir / "compiled" / f"{normalize(build.package)}-{version}-{compiled_key(build, pin, build_lock)}"
    with _locked(target.with_suffix(".lock")):
        provenance = target / "provenance.json"
        if provenance.is_file():
            record = json.loads(provenance.read_text())
            wheel, sdist = target / record["wheel"], target / record["sdist"]
            if wheel.is_file() and sdist.is_file() and _sha256(wheel) == record["wheel_sha256"]:
                return CompiledWheel(wheel, record["wheel_sha256"], sdist)
        log(f"compiling {build.package} {version} from its sdist (once per host; llama-cpp-python takes ~8 min)")
        _compile(build, pin, build_lock, target)
        record = json.loads(provenance.read_text())
        log(f"compiled {record['wheel']} in {record['seconds']:.0f} s")
        return CompiledWheel(target / record["wheel"], record["wheel_sha256"], target / record["sdist"])


def _compile(build: SourceBuild, pin: str, build_lock: str, target: Path) -> None:
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"compile-{normalize(build.package)}-") as tmp:
        work = Path(tmp)
        (work / "pin.txt").write_text(pin)
        (work / "build.txt").write_text(build_lock)
        pinned = locked_pip_env()
        download = [*pip, "download", "--no-deps", "--no-binary", ":all:", "--require-hashes"]
        _run([*download, "-r", str(work / "pin.txt"), "-d", str(work / "sdist")], "downloading the sdist", env=pinned)
        sdist = next((work / "sdist").iterdir())
        _run([sys.executable, "-m", "venv", str(work / "env")], "creating the build venv")
        env_pip = [str(work / "env" / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
        install = [*env_pip, "install", "--require-hashes", "--no-deps", "--only-binary", ":all:"]
        _run([*install, "-r", str(work / "build.txt")], "installing the locked build requirements", env=pinned)
        env = {
            **pinned,
            **build.env,
            "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH,
            "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 1),
            "PATH": f"{work / 'env' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        _run([*env_pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(work / "wheel"),
              str(sdist)], f"compiling {build.package}", env=env)  # fmt: skip
        wheel = next((work / "wheel").glob("*.whl"))
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        shutil.move(str(wheel), staging / wheel.name)
        shutil.move(str(sdist), staging / sdist.name)
        record = {
            "package": build.package,
            "sdist": sdist.name,
            "sdist_sha256": _sha256(staging / sdist.name),
            "wheel": wheel.name,
            "wheel_sha256": _sha256(staging / wheel.name),
            "env": build.env,
            "build_lock_sha256": hashlib.sha256(build_lock.encode()).hexdigest(),
            "compiler": _compiler(),
            "seconds": round(time.monotonic() - started, 1),
        }
        (staging / "provenance.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)


def extract_sdist_files(sdist: Path, members: tuple[str, ...], dest: Path) -> None:
    """Copy files or folders of an sdist (paths relative to its top folder) into `dest`, by their last part.

    Only regular files and folders are taken; links, devices and paths that leave the folder are refused.
    """
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(sdist, "r:gz") as archive:
        names = archive.getmembers()
        top = names[0].name.split("/", 1)[0] if names else ""
        for member_path in members:
            prefix = f"{top}/{member_path.strip('/')}"
            chosen = [m for m in names if m.name == prefix or m.name.startswith(prefix + "/")]
            if not chosen:
                raise ImageBuildError(f"{sdist.name} has no {member_path}")
            base = prefix.rsplit("/", 1)[0] + "/"
            for member in chosen:
                if not (member.isfile() or member.isdir()) or ".." in member.name.split("/"):
                    raise ImageBuildError(f"{sdist.name}: refusing {member.name!r} (not a plain file or folder)")
                relative = member.name[len(base) :]
                if member.isdir():
                    (dest / relative).mkdir(parents=True, exist_ok=True)
                    continue
                (dest / relative).parent.mkdir(parents=True, exist_ok=True)
                source = archive.extractfile(member)
                if source is None:
                    raise ImageBuildError(f"{sdist.name}: cannot read {member.name}")
                with source, (dest / relative).open("wb") as out:
                    shutil.copyfileobj(source, out)
