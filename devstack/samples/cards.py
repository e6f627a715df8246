"""Model cards (README.md with YAML front matter) and small JSON files, rendered byte-for-byte the same."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

FrontValue = str | Sequence[str]


def dump_json(data: Mapping[str, object]) -> bytes:
    """Stable JSON: sorted keys, two-space indent, trailing newline."""
    return (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _yaml_scalar(value: str) -> str:
    plain = value and all(ch.isalnum() or ch in "-_./ " for ch in value) and not value[0].isspace()
    return value if plain and not value.endswith(" ") else json.dumps(value)


def front_matter(fields: Mapping[str, FrontValue]) -> str:
    """A YAML front-matter block from plain strings and lists of strings (in the given order)."""
    lines = ["---"]
    for key, value in fields.items():
        if isinstance(value, str):
            lines.append(f"{key}: {_yaml_scalar(value)}")
        else:
            lines.append(f"{key}:")
            lines.extend(f"- {_yaml_scalar(item)}" for item in value)
    lines.append("---")
    return "\n".join(lines) + "\n"


def model_card(fields: Mapping[str, FrontValue], title: str, body: str) -> bytes:
    return (front_matter(fields) + f"\n# {title}\n\n{body.strip()}\n").encode()
