"""Artifact keys and markdown escaping: one rule each, for every flow."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from registry.artifacts import KEY_MAX, artifact_key, cell, code


def test_keys_are_stable_slugs() -> None:
    assert artifact_key("publish", "Qwen--Qwen3.5-0.6B") == "publish-qwen--qwen3-5-0-6b"
    assert artifact_key("cell", "org--m--8k-cpu") == "cell-org--m--8k-cpu"
    assert artifact_key("stage", "upload", "East_US") == "stage-upload-east-us"


@given(st.lists(st.text(), min_size=1, max_size=4))
def test_every_key_is_one_prefect_accepts(parts: list[str]) -> None:
    key = artifact_key(*parts)
    assert re.fullmatch(r"[a-z0-9-]*", key) and len(key) <= KEY_MAX
    assert not key.startswith("-") and not key.endswith("-")


def test_cells_cannot_break_a_table_row() -> None:
    assert cell("a|b\nc") == "a\\|b c"
    assert cell(None) == "" and cell(0.123456) == "0.1235" and cell(3) == "3"


@given(st.text())
def test_code_spans_hold_any_text(text: str) -> None:
    rendered = code(text)
    fence = re.match(r"`+", rendered)
    assert fence is not None and rendered.endswith(fence.group())
    inner = rendered[len(fence.group()) : -len(fence.group())]
    assert fence.group() not in inner and "\n" not in rendered
