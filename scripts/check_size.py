"""The size rule of docs/development.md for product code: no function of 60 lines or more, no module over 600.

A function's length is `end_lineno - lineno` of its `def` (decorators and the line after the last one not
counted), as the project's pre-stop hook counts it; ruff's statement bound (PLR0915) does not count lines.
Run by `make test` (scripts/test.sh) next to ruff, mypy and lint-imports; exits 1 listing every offender.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("flows", "scanners", "builders", "validators", "decisions", "registry")
MAX_FUNCTION = 60  # a function is too long at end_lineno - lineno >= MAX_FUNCTION
MAX_MODULE = 600  # lines

# Temporary, documented exceptions ("path" or "path:function" -> why); none today. Add one only with an issue
# that removes it.
EXCEPTIONS: dict[str, str] = {}


def offenders(root: Path = ROOT) -> list[str]:
    found: list[str] = []
    for package in PRODUCT:
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            text = path.read_text(encoding="utf-8")
            lines = len(text.splitlines())
            if lines > MAX_MODULE and relative not in EXCEPTIONS:
                found.append(f"{relative}: {lines} lines (at most {MAX_MODULE}); split it by concept")
            for node in ast.walk(ast.parse(text, filename=relative)):
                if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or node.end_lineno is None:
                    continue
                length = node.end_lineno - node.lineno
                if length >= MAX_FUNCTION and f"{relative}:{node.name}" not in EXCEPTIONS:
                    found.append(
                        f"{relative}:{node.lineno} {node.name}: {length} lines (under {MAX_FUNCTION}); split it"
                    )
    return found


def main() -> int:
    found = offenders()
    for line in found:
        print(line, file=sys.stderr)
    if found:
        print(f"{len(found)} product module(s)/function(s) over the size rule (docs/development.md)", file=sys.stderr)
        return 1
    print("size rule: every product module <= 600 lines, every function < 60 lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
