"""docs/decisions.md lists every decision: each row's module and rule exist, each policy key is a setting."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from registry.rules import Rule
from registry.settings import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "decisions.md"
DECISIONS = {
    "select a candidate",
    "screen verdict",
    "maintainer review",
    "expire a review request",
    "image gate",
    "cell verdict",
    "publish",
    "withdraw or flag (upstream)",
    "re-validate a cell",
    "move an entry to a new image",
}


def rows() -> list[dict[str, str]]:
    """The decision table's rows as {decision, module, rule, keys, explained}."""
    found: list[dict[str, str]] = []
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 5 or not cells[1].startswith("`") or cells[0] == "decision":
            continue
        decision, module, rule, keys, explained = cells
        found.append({"decision": decision, "module": module, "rule": rule, "keys": keys, "explained": explained})
    return found


def _setting(dotted: str) -> bool:
    model: type[BaseModel] = Settings
    *sections, leaf = dotted.split(".")
    for name in sections:
        field = model.model_fields.get(name)
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return False
        model = annotation
    return leaf in model.model_fields


def test_every_pipeline_decision_is_listed_once() -> None:
    listed = [row["decision"] for row in rows()]
    assert len(listed) == len(set(listed))
    assert set(listed) >= DECISIONS, f"missing from docs/decisions.md: {sorted(DECISIONS - set(listed))}"


@pytest.mark.parametrize("row", rows(), ids=lambda row: row["decision"])
def test_each_listed_decision_exists_in_code(row: dict[str, str]) -> None:
    path = row["module"].strip("`")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    symbol = getattr(module, row["rule"].strip("`"), None)
    assert symbol is not None, f"{path} has no {row['rule']}"
    assert isinstance(symbol, Rule) or callable(symbol), f"{row['rule']} is neither a rule nor makes one"
    for key in re.findall(r"`([a-z_]+(?:\.(?:[a-z_]+|<[a-z]+>))+)`", row["keys"]):
        fixed = key.split(".<", 1)[0]  # `slo.<task>.<family>`: tables named by the policy under a setting
        assert _setting(fixed), f"{key} (decision {row['decision']!r}) is not a field of Settings"
    assert row["explained"], f"decision {row['decision']!r} names no artifact or record that explains it"


def test_the_parser_sees_the_table() -> None:
    assert len(rows()) >= len(DECISIONS)
    assert _setting("discovery.max_parameters") and not _setting("discovery.nope") and not _setting("nope.x")
    keys = "".join(row["keys"] for row in rows() if row["decision"] == "cell verdict")
    assert "`slo.<task>.<family>`" in keys and "`validation.max_benchmark_error_rate`" in keys
