"""What the Hub derives from a repository's files: card data, config subset, safetensors counts, tags.

Every input here comes from a model repository and is hostile: sizes are bounded, YAML is loaded with
`yaml.safe_load` only and walked with a node budget (alias bombs, recursive nodes), JSON is bounded,
and anything malformed yields "no value" rather than an error.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import struct
from collections.abc import Callable, Mapping
from typing import Any

import yaml

MAX_README_BYTES = 1 << 20
MAX_JSON_BYTES = 2 << 20
MAX_SAFETENSORS_HEADER = 100 << 20
_NODE_BUDGET = 20_000
_MAX_DEPTH = 32

ReadFile = Callable[[str, int], bytes | None]
"""read(path, max_bytes) -> the file's first max_bytes bytes, or None if the commit has no such file."""


class _TooBig(Exception):
    """A structure exceeded the node budget or depth while sanitizing."""


def _sanitize(value: Any, budget: list[int], depth: int = 0) -> Any:
    """Turn a safe_load result into plain JSON data bounded in size and depth; _TooBig past the bounds."""
    budget[0] -= 1
    if budget[0] < 0 or depth > _MAX_DEPTH:
        raise _TooBig
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _sanitize(v, budget, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_sanitize(v, budget, depth + 1) for v in value]
    return None  # bytes (!!binary) and anything else the loader may produce


def front_matter(readme: bytes | None) -> dict[str, Any] | None:
    """The README's YAML front matter as a dict, or None when absent, malformed, hostile or not a mapping."""
    if not readme:
        return None
    text = readme[:MAX_README_BYTES].decode("utf-8", errors="replace").lstrip("\ufeff")
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        return None
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
    except StopIteration:
        return None
    try:
        loaded = yaml.safe_load("\n".join(lines[1:end]))
    except (yaml.YAMLError, ValueError, RecursionError):
        return None
    if not isinstance(loaded, dict):
        return None
    try:
        data = _sanitize(loaded, [_NODE_BUDGET])
    except (_TooBig, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def load_json_object(raw: bytes | None) -> dict[str, Any] | None:
    """A JSON object from a repo file, or None when absent, too large, malformed or not an object."""
    if raw is None or len(raw) > MAX_JSON_BYTES:
        return None
    try:
        loaded = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(loaded, dict):
        return None
    try:
        data = _sanitize(loaded, [_NODE_BUDGET * 50])
    except (_TooBig, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _str_list(value: Any) -> list[str] | None:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    return None


_TOKENIZER_KEYS = ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token")


def _token_value(value: Any) -> str | dict[str, Any] | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return {"content": value["content"], "__type": "AddedToken"}
    return None


def _chat_template(value: Any) -> str | list[dict[str, str]] | None:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        named = [
            {"name": t["name"], "template": t["template"]}
            for t in value
            if isinstance(t, dict) and isinstance(t.get("name"), str) and isinstance(t.get("template"), str)
        ]
        return named or None
    return None


def exposed_config(
    config: dict[str, Any] | None, tokenizer: dict[str, Any] | None, adapter: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The subset of config.json (+ tokenizer_config.json, adapter_config.json) the Hub shows as `config`."""
    out: dict[str, Any] = {}
    if config is not None:
        if (archs := _str_list(config.get("architectures"))) is not None:
            out["architectures"] = archs
        if isinstance(config.get("model_type"), str):
            out["model_type"] = config["model_type"]
        auto_map = config.get("auto_map")
        if isinstance(auto_map, dict):
            out["auto_map"] = {k: v for k, v in auto_map.items() if isinstance(v, str) or _str_list(v) is not None}
        quant = config.get("quantization_config")
        if isinstance(quant, dict):
            subset = {k: quant[k] for k in ("quant_method", "bits", "load_in_4bit", "load_in_8bit") if k in quant}
            if subset:
                out["quantization_config"] = subset
        if isinstance(config.get("task_specific_params"), dict):
            out["task_specific_params"] = config["task_specific_params"]
    if tokenizer is not None:
        tok: dict[str, Any] = {}
        for key in _TOKENIZER_KEYS:
            if (token := _token_value(tokenizer.get(key))) is not None:
                tok[key] = token
        if (template := _chat_template(tokenizer.get("chat_template"))) is not None:
            tok["chat_template"] = template
        if tok:
            out["tokenizer_config"] = tok
    if adapter is not None:
        peft = {k: adapter[k] for k in ("base_model_name_or_path", "task_type") if isinstance(adapter.get(k), str)}
        if peft:
            out["peft"] = peft
    return out or None


def safetensors_header(raw: bytes) -> dict[str, Any] | None:
    """Parse the JSON header at the start of a safetensors file (raw: at least its first 8 + N bytes)."""
    if len(raw) < 8:
        return None
    (length,) = struct.unpack("<Q", raw[:8])
    if length == 0 or length > MAX_SAFETENSORS_HEADER or len(raw) < 8 + length:
        return None
    try:
        header = json.loads(raw[8 : 8 + length])
    except (ValueError, RecursionError):
        return None
    return header if isinstance(header, dict) else None


def parameter_counts(header: dict[str, Any]) -> dict[str, int] | None:
    """{dtype: parameter count} for one safetensors header, or None if any tensor entry is malformed."""
    counts: dict[str, int] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict):
            return None
        dtype, shape = info.get("dtype"), info.get("shape")
        if not isinstance(dtype, str) or not isinstance(shape, list):
            return None
        if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            return None
        counts[dtype] = counts.get(dtype, 0) + math.prod(shape)
    return counts


def safetensors_files(paths: list[str], read: ReadFile) -> list[str]:
    """The safetensors files the Hub counts: the root index's shards, else root files, else all files."""
    index = load_json_object(read("model.safetensors.index.json", MAX_JSON_BYTES + 1))
    if index is not None and isinstance(index.get("weight_map"), dict):
        shards = sorted({v for v in index["weight_map"].values() if isinstance(v, str)})
        if shards and all(s in paths for s in shards):
            return shards
    root = [p for p in paths if p.endswith(".safetensors") and "/" not in p]
    return root or [p for p in paths if p.endswith(".safetensors")]


def safetensors_info(paths: list[str], read: ReadFile) -> dict[str, Any] | None:
    """`{"parameters": {dtype: n}, "total": n}` over the safetensors files; None if none or any is bad."""
    files = safetensors_files(paths, read)
    if not files:
        return None
    totals: dict[str, int] = {}
    for path in files:
        head = read(path, 8)
        if head is None or len(head) < 8:
            return None
        (length,) = struct.unpack("<Q", head[:8])
        if length > MAX_SAFETENSORS_HEADER:
            return None
        raw = read(path, 8 + length)
        header = safetensors_header(raw or b"")
        counts = parameter_counts(header) if header is not None else None
        if counts is None:
            return None
        for dtype, n in counts.items():
            totals[dtype] = totals.get(dtype, 0) + n
    return {"parameters": totals, "total": sum(totals.values())}


_PIPELINES = (
    ("ForCausalLM", "text-generation"),
    ("LMHeadModel", "text-generation"),
    ("ForConditionalGeneration", "text2text-generation"),
    ("ForSequenceClassification", "text-classification"),
    ("ForTokenClassification", "token-classification"),
    ("ForQuestionAnswering", "question-answering"),
    ("ForMaskedLM", "fill-mask"),
    ("ForImageClassification", "image-classification"),
    ("ForSpeechSeq2Seq", "automatic-speech-recognition"),
)


def infer_library(card: dict[str, Any] | None, paths: list[str]) -> str | None:
    if card is not None and isinstance(card.get("library_name"), str):
        return str(card["library_name"])
    if "adapter_config.json" in paths:
        return "peft"
    if "model_index.json" in paths:
        return "diffusers"
    if "config.json" in paths:
        return "transformers"
    if any(p.endswith(".gguf") for p in paths):
        return "gguf"
    return None


def infer_pipeline(card: dict[str, Any] | None, config: dict[str, Any] | None) -> str | None:
    if card is not None and isinstance(card.get("pipeline_tag"), str):
        return str(card["pipeline_tag"])
    for arch in (config or {}).get("architectures") or []:
        for suffix, task in _PIPELINES:
            if isinstance(arch, str) and arch.endswith(suffix):
                return task
    return None


def _card_values(card: dict[str, Any], key: str) -> list[str]:
    value = card.get(key)
    if isinstance(value, str):
        return [value]
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def repo_tags(
    card: dict[str, Any] | None,
    library: str | None,
    pipeline: str | None,
    paths: list[str],
    config: dict[str, Any] | None,
) -> list[str]:
    """The Hub's tag list: library, format tags, card tags, pipeline, model type, license/dataset/base."""
    tags: list[str] = []

    def add(tag: str) -> None:
        if tag and tag not in tags:
            tags.append(tag)

    if library:
        add(library)
    if any(p.endswith(".safetensors") for p in paths):
        add("safetensors")
    if any(p.endswith(".gguf") for p in paths):
        add("gguf")
    card = card or {}
    for tag in _card_values(card, "tags"):
        add(tag)
    if pipeline:
        add(pipeline)
    if config is not None and isinstance(config.get("model_type"), str):
        add(config["model_type"])
    for lang in _card_values(card, "language"):
        add(lang)
    for dataset in _card_values(card, "datasets"):
        add(f"dataset:{dataset}")
    for base in _card_values(card, "base_model"):
        add(f"base_model:{base}")
    for lic in _card_values(card, "license"):
        add(f"license:{lic}")
    return tags
