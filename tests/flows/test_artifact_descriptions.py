"""Every artifact the product creates has a description (the Prefect UI shows "No description" otherwise)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("flows", "scanners", "builders", "validators", "decisions", "registry")


def artifact_calls_without_description() -> list[str]:
    found: list[str] = []
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.Call):
                    continue
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", "")
                described = any(keyword.arg == "description" for keyword in node.keywords)
                if name.startswith("create_") and name.endswith("_artifact") and not described:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    return found


def test_every_artifact_has_a_description() -> None:
    assert artifact_calls_without_description() == []
