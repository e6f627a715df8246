"""The size rule of docs/development.md (scripts/check_size.py, run by `make test`) finds what it should."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def _check_size() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_size", ROOT / "scripts" / "check_size.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_long_functions_and_modules_are_named(tmp_path: Path) -> None:
    check = _check_size()
    package = tmp_path / "flows"
    package.mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(59))
    (package / "ok.py").write_text(f"def short():\n{body}\n")  # end_lineno - lineno == 59
    (package / "long.py").write_text(f"async def long():\n{body}\n    return x0\n")
    (package / "big.py").write_text("\n" * 601)
    found = check.offenders(tmp_path)
    assert any(line.startswith("flows/long.py:1 long: 60 lines") for line in found), found
    assert any(line.startswith("flows/big.py: 601 lines") for line in found), found
    assert not any("ok.py" in line for line in found)


def test_the_product_keeps_the_rule() -> None:
    assert _check_size().offenders() == []
