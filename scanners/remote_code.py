"""Custom code: anything that would need `trust_remote_code=True` or would run repository code at serving
time.

Signals: `auto_map` in config.json, tokenizer_config.json and every processor / preprocessor /
feature-extractor config (including cross-repo references `owner/repo--module.Class`), any `*.py` file
anywhere in the repository, custom pipeline or inference-handler files, and `trust_remote_code` hints in the
card. Nothing is imported: the JSON is parsed as data and Python files are only listed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from registry import finding_codes as codes
from registry.processor_files import PROCESSOR_CONFIG_FILES
from registry.schema import Finding, Severity
from scanners.paths import display_path

SCANNER = "remote_code"

# Config files whose `auto_map` transformers honours (with trust_remote_code): the model's, the tokenizer's, the
# generation config and every processor config (registry/processor_files.py).
AUTO_MAP_FILES = (
    "config.json",
    "tokenizer_config.json",
    *sorted(PROCESSOR_CONFIG_FILES),
    "generation_config.json",
)
# Files that a serving stack (Inference Endpoints, custom pipelines) would import and run.
HANDLER_NAMES = ("handler.py", "pipeline.py", "custom_pipeline.py", "inference.py", "predict.py")
CODE_SUFFIXES = (".py", ".pyc", ".pyo", ".pyx", ".pyd", ".so", ".ipynb")
_CROSS_REPO = re.compile(r"^([A-Za-z0-9][\w.\-]*/[\w.\-]+)--(.+)$")
_CARD_HINT = re.compile(r"trust_remote_code\s*=\s*true|--trust-remote-code|trust-remote-code", re.IGNORECASE)


def is_auto_map_file(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return name in AUTO_MAP_FILES or (name.endswith("_config.json") and "processor" in name)


def _iter_references(value: Any) -> Iterable[str]:
    """Every class reference in an auto_map value (a string, a list such as [slow, fast], or nested)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _iter_references(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _iter_references(item)


def auto_map_findings(path: str, config: Mapping[str, Any]) -> list[Finding]:
    """Findings for the `auto_map` of one parsed config file (top level and nested sub-configs)."""
    found: list[Finding] = []
    shown = display_path(path)
    maps: list[Any] = []
    if "auto_map" in config:
        maps.append(config["auto_map"])
    for key, value in config.items():  # e.g. tokenizer_config nested in processor configs
        if isinstance(value, dict) and "auto_map" in value and key != "auto_map":
            maps.append(value["auto_map"])
    for auto_map in maps:
        if not isinstance(auto_map, dict | list | str) or not auto_map:
            continue
        refs = sorted({str(r)[:200] for r in _iter_references(auto_map) if r})
        classes = ", ".join(refs[:6]) + (" ..." if len(refs) > 6 else "")
        found.append(
            Finding(
                scanner=SCANNER,
                code=codes.REMOTE_CODE_AUTO_MAP,
                severity=Severity.HIGH,
                message=f"{shown} has an auto_map ({classes or 'empty'}): loading needs trust_remote_code",
                path=shown,
            )
        )
        for ref in refs:
            match = _CROSS_REPO.match(ref)
            if match:
                found.append(
                    Finding(
                        scanner=SCANNER,
                        code=codes.REMOTE_CODE_CROSS_REPO,
                        severity=Severity.CRITICAL,
                        message=f"{shown} loads code from another repository "
                        f"({display_path(match.group(1))}: "
                        f"{display_path(match.group(2))}); that code is outside this screening",
                        path=shown,
                    )
                )
    return found


def parse_config(data: bytes) -> dict[str, Any] | None:
    """A config file's JSON object, or None when it is not one (never raises on hostile bytes)."""
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def code_file_findings(paths: Iterable[str]) -> list[Finding]:
    """Python (and other executable) files anywhere in the repository, and custom handler/pipeline files."""
    found: list[Finding] = []
    for path in paths:
        lower = path.lower()
        name = lower.rsplit("/", 1)[-1]
        shown = display_path(path)
        if name in HANDLER_NAMES:
            found.append(
                Finding(
                    scanner=SCANNER,
                    code=codes.REMOTE_CODE_HANDLER,
                    severity=Severity.HIGH,
                    message=f"{shown} is a custom inference handler/pipeline that a serving stack would run",
                    path=shown,
                )
            )
        if lower.endswith(CODE_SUFFIXES):
            found.append(
                Finding(
                    scanner=SCANNER,
                    code=codes.REMOTE_CODE_PYTHON_FILE,
                    severity=Severity.HIGH,
                    message=f"{shown} is repository code (never imported here); serving it needs trust_remote_code",
                    path=shown,
                )
            )
    return found


def card_hint_findings(card: Mapping[str, Any], readme: str | None) -> list[Finding]:
    """`trust_remote_code` hints: in the card metadata, tags or the README's usage snippets."""
    hints: list[str] = []
    if any(str(t).lower() in ("custom_code", "custom-code") for t in _as_list(card.get("tags"))):
        hints.append("the card is tagged custom_code")
    if readme and _CARD_HINT.search(readme[:1_000_000]):
        hints.append("the README tells users to pass trust_remote_code")
    if not hints:
        return []
    return [
        Finding(
            scanner=SCANNER,
            code=codes.REMOTE_CODE_CARD_HINT,
            severity=Severity.HIGH,
            message="; ".join(hints) + ": the model expects repository code to run",
            path="README.md",
        )
    ]


def _as_list(value: object) -> list[object]:
    if isinstance(value, list | tuple):
        return list(value)
    return [value] if value is not None else []


def scan_remote_code(
    paths: Iterable[str],
    configs: Mapping[str, bytes],
    card: Mapping[str, Any],
    readme: str | None,
    *,
    hub_config: Mapping[str, Any] | None = None,
) -> list[Finding]:
    """All custom-code findings. `configs` maps auto_map-capable config paths to their bytes; `hub_config` is
    the config the Hub reports in model info (its `auto_map` and those of its nested `tokenizer_config`,
    `processor_config`, ... count too)."""
    found: list[Finding] = []
    seen_auto_map: set[str] = set()
    for path in sorted(configs):
        parsed = parse_config(configs[path])
        if parsed is None:
            continue
        for finding in auto_map_findings(path, parsed):
            found.append(finding)
            seen_auto_map.add(path)
    if hub_config:
        nested = {k: v for k, v in hub_config.items() if k.endswith("_config") and isinstance(v, dict)}
        if "config.json" not in seen_auto_map:
            top = {k: v for k, v in hub_config.items() if k not in nested}
            found.extend(auto_map_findings("config.json", top))
        for key, value in sorted(nested.items()):  # tokenizer_config, processor_config, ... the Hub reports
            name = f"{key[:64]}.json"
            if name not in seen_auto_map:
                found.extend(auto_map_findings(name, value))
    found.extend(code_file_findings(paths))
    found.extend(card_hint_findings(card, readme))
    return _dedupe(found)


def _dedupe(findings: list[Finding]) -> list[Finding]:
    return list(dict.fromkeys(findings))
