"""Lock files: the venv is exactly the lock, runtime versions are one fact, and update proposals are real."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import re
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from builders.errors import RecipeError
from builders.locks import (
    build_lock_name,
    lock_path,
    normalize,
    pins,
    proposed_updates,
    read_lock,
    require_lock,
    requirement_block,
    with_wheel_hash,
)
from builders.recipes import all_recipes, get_recipe
from builders.recipes.offline import ENTRYPOINT_LOCK_NAME, ENTRYPOINT_REQUIREMENTS

ROOT = Path(__file__).resolve().parents[2]
VENV_LOCK = ROOT / "requirements" / "venv.txt"


def test_the_venv_is_exactly_the_lock() -> None:
    locked = pins(VENV_LOCK.read_text())
    assert len(locked) > 50
    installed = {normalize(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()}
    wrong = {name: (version, installed.get(name)) for name, version in locked.items() if installed.get(name) != version}
    assert not wrong, f"the venv differs from requirements/venv.txt (locked, installed): {wrong}; run `make setup`"


def test_pyproject_ranges_admit_the_locked_versions() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    locked = pins(VENV_LOCK.read_text())
    wanted = list(project["dependencies"])
    for extra in ("serve", "dev", "postgres"):
        wanted += project["optional-dependencies"][extra]
    for line in wanted:
        requirement = Requirement(line)
        version = locked.get(normalize(requirement.name))
        assert version is not None, f"{requirement.name} is not in requirements/venv.txt: run `make lock`"
        assert requirement.specifier.contains(version, prereleases=True), (line, version)


def test_runtime_versions_are_one_fact() -> None:
    """transformers: the hf-serve recipe's version is what its image locks, the venv locks and the venv runs."""
    version = get_recipe("hf-serve").version
    assert pins(read_lock("hf-serve"))["transformers"] == version
    assert pins(VENV_LOCK.read_text())["transformers"] == version
    assert pins((ROOT / "requirements" / "runtime-pins.txt").read_text())["transformers"] == version
    assert importlib.metadata.version("transformers") == version


@pytest.mark.parametrize("runtime", sorted(r for r, recipe in all_recipes().items() if recipe.requirements))
def test_every_built_runtime_has_a_lock_that_satisfies_its_recipe(runtime: str) -> None:
    recipe = get_recipe(runtime)
    locked = pins(require_lock(runtime, recipe.lock))
    assert recipe.lock == lock_path(runtime).read_text()
    for line in recipe.requirements:
        requirement = Requirement(line)
        version = locked.get(normalize(requirement.name))
        assert version is not None and requirement.specifier.contains(version, prereleases=True), (line, version)
    entries = [block for block in re.split(r"\n(?=\S)", recipe.lock) if "==" in block and not block.startswith("#")]
    assert len(entries) == len(locked) and all("--hash=sha256:" in entry for entry in entries), runtime


def test_the_entrypoint_layer_verifies_with_the_model_signing_the_pipeline_signs_with() -> None:
    locked = pins(require_lock(ENTRYPOINT_LOCK_NAME, read_lock(ENTRYPOINT_LOCK_NAME)))
    for line in ENTRYPOINT_REQUIREMENTS:
        requirement = Requirement(line)
        assert requirement.specifier.contains(locked[normalize(requirement.name)]), line
    assert locked["model-signing"] == pins(VENV_LOCK.read_text())["model-signing"]
    assert locked["model-signing"] == importlib.metadata.version("model-signing")


def test_cpu_images_take_the_local_torch_and_gpu_images_their_own() -> None:
    for runtime, recipe in all_recipes().items():
        torch = pins(recipe.lock).get("torch")
        if torch is None:
            continue
        assert torch.endswith("+cpu") == recipe.cpu_only, (runtime, torch)


def test_a_package_compiled_here_is_pinned_by_its_sdist_and_has_a_build_lock() -> None:
    recipe = get_recipe("llama-cpp")
    (build,) = recipe.source_builds
    block = requirement_block(recipe.lock, build.package)
    assert block.count("--hash=sha256:") == 1  # the one sdist (the index has no wheel)
    assert recipe.build_lock == read_lock(build_lock_name("llama-cpp"))
    assert {"scikit-build-core", "cmake", "ninja"} <= set(pins(recipe.build_lock))
    rewritten = with_wheel_hash(recipe.lock, build.package, "ab" * 32)
    assert requirement_block(rewritten, build.package).count("--hash=sha256:" + "ab" * 32) == 1
    assert rewritten.count("--hash") == recipe.lock.count("--hash")


def test_a_missing_lock_says_how_to_make_it() -> None:
    with pytest.raises(RecipeError, match="make lock"):
        require_lock("no-such-runtime", read_lock("no-such-runtime"))


def _wheel(directory: Path, name: str, version: str) -> None:
    """A minimal pure-Python wheel (metadata only), enough for pip to resolve."""
    dist = f"{name.replace('-', '_')}-{version}.dist-info"
    files = {
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text)}")
    record.append(f"{dist}/RECORD,,")
    with zipfile.ZipFile(directory / f"{name.replace('-', '_')}-{version}-py3-none-any.whl", "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
        archive.writestr(f"{dist}/RECORD", "\n".join(record) + "\n")


def test_proposed_updates_compare_a_fresh_resolution_with_the_lock(tmp_path: Path) -> None:
    for version in ("1.0", "1.1"):
        _wheel(tmp_path, "demo-pkg", version)
    _wheel(tmp_path, "other-pkg", "2.0")
    index = ["--no-index", "--find-links", str(tmp_path)]
    lock = "demo-pkg==1.0 \\\n    --hash=sha256:00\nother-pkg==2.0 \\\n    --hash=sha256:00\n"
    updates = proposed_updates(["demo-pkg", "other-pkg"], lock, index_args=index)
    assert [u.change for u in updates] == ["demo-pkg 1.0 -> 1.1"]
    assert proposed_updates(["demo-pkg==1.0", "other-pkg"], lock, index_args=index) == []
    with pytest.raises(RecipeError, match="cannot resolve"):
        proposed_updates(["absent-pkg"], lock, index_args=index)
