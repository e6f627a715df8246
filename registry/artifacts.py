"""Prefect artifact keys and the markdown in artifacts: one slug rule and one escaping rule for every flow.

Prefect accepts artifact keys of lowercase ASCII letters, digits and dashes only; every text that becomes part
of a key (repository ids, template ids, runtime and region names) goes through `artifact_key`. Every text
from outside (reasons, file names, repository ids, messages) that goes into a markdown table cell goes through
`cell`, into inline code through `code`.
"""

from __future__ import annotations

import re

KEY_MAX = 100


def artifact_key(*parts: str) -> str:
    """`artifact_key("publish", "Qwen--Qwen3.5")` -> `publish-qwen--qwen3-5`: a valid, stable Prefect key."""
    text = "-".join(parts).lower()
    slug = "".join(c if c.isascii() and c.isalnum() else "-" for c in text)
    return slug[:KEY_MAX].strip("-")


def cell(value: object) -> str:
    """A markdown table cell: pipes escaped, line breaks flattened; floats with 4 significant digits."""
    if value is None:
        return ""
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return text.replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def code(value: object) -> str:
    """Inline code that a backtick in `value` cannot close early (and a table cell it cannot break)."""
    text = cell(value)
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"
